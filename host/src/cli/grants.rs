//! The folders a point's recorded program would grant its guests. `host run --from POINT`
//! without a job file runs the program the point recorded, mounts included: a point received
//! from someone else (an export, a shared object store, another user's folder) could grant a
//! guest `/home/you` writable. Such a point runs only with `--trust-grants`, after the grants
//! are shown; one written in this state folder by its owner runs as it is.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use host::store::Store;
use host::topology::Plan;

/// Why a point's program is not run as it is.
#[derive(Debug, thiserror::Error)]
#[error(
    "{point} was not written in this state folder by you, and its recorded job would grant its \
     guests these folders:\n  - {}\nrun it with --trust-grants to grant them, or give a job \
     file of your own",
    .grants.join("\n  - ")
)]
pub struct UntrustedGrants {
    /// The point, as a person should read its location.
    pub point: String,
    /// Each mount, in words.
    pub grants: Vec<String>,
}

/// Every mount of `plan`, in words (`operator `sink`: /abs/output as /output, writable`).
pub fn grants(plan: &Plan) -> Vec<String> {
    let mut grants = Vec::new();
    for op in &plan.operators {
        for mount in &op.mounts {
            let access = if mount.writable {
                "writable"
            } else {
                "read-only"
            };
            grants.push(format!(
                "operator `{}`: {} as {}, {access}",
                op.id,
                mount.host.display(),
                mount.guest
            ));
        }
    }
    grants
}

/// Refuses the program of the point at `dir` (`shown` to a person) if it grants folders and
/// the point came from elsewhere, unless `trusted`.
pub fn check(
    store: &Store,
    dir: &Path,
    shown: &str,
    plan: &Plan,
    trusted: bool,
) -> Result<(), UntrustedGrants> {
    let grants = grants(plan);
    if grants.is_empty() || written_here(store, dir) {
        return Ok(());
    }
    if trusted {
        for grant in &grants {
            tracing::info!("granting, as {shown} recorded: {grant}");
        }
        return Ok(());
    }
    Err(UntrustedGrants {
        point: shown.to_owned(),
        grants,
    })
}

/// Whether the point at `dir` lies in this (local) state folder and belongs to the user
/// running this process.
fn written_here(store: &Store, dir: &Path) -> bool {
    // A point on an object store: whoever holds the bucket's credentials may have written it.
    let Some(dir) = store.local_path(dir) else {
        return false;
    };
    let (Ok(dir), Ok(root)) = (dir.canonicalize(), store.layout().root().canonicalize()) else {
        return false;
    };
    let mine = dir
        .metadata()
        .is_ok_and(|m| m.uid() == rustix::process::geteuid().as_raw());
    dir.starts_with(root) && mine
}
