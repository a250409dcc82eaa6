//! The host's own folders, which no mount may reach: the state folder (jobs, status files,
//! points, the module store), its compiled-module cache (native code the host loads outside
//! the sandbox), and the job file's folder (the job file, often its modules).
//!
//! A mount *overlaps* a folder when it lies inside it or the folder lies inside the mount
//! (mounting `.` covers `./.host`), both sides canonical (symbolic links and `..` resolved; a
//! path that does not exist yet by its nearest existing ancestor). Any mount, read-only or
//! writable, that overlaps the state folder or the cache is refused: reading other jobs' state
//! or the cache is a leak too. For the job file's folder, only a writable mount that covers
//! it is refused: reading the job's own folder, and writing a folder inside it (`output/`),
//! are what job files do. Likewise a writable mount that covers one of the job's module files,
//! wherever it is: a guest could put its own code there for the job's next run.
//!
//! Checked twice: when the job is admitted ([`Protected::refusals`], which `host run` and
//! `host check` report), and when a mount is opened for a guest ([`Protected::open`]), which
//! opens the checked folder once and verifies that the handle is that folder, so that a
//! symbolic link swapped in between the check and the open is refused, not followed.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use std::os::unix::fs::MetadataExt as _;

use cap_std::fs::{Dir, MetadataExt as _};

use crate::ids::OperatorId;
use crate::topology::{Mount, Plan};

/// Which of the host's own folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The state folder.
    StateFolder,
    /// The compiled-module cache.
    Cache,
    /// The folder of the job file.
    JobFolder,
    /// An operator's module file: a guest that could rewrite it would run its code, with that
    /// operator's grants, in the job's next run.
    Module,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::StateFolder => "the state folder",
            Kind::Cache => "the compiled-module cache",
            Kind::JobFolder => "the job file's folder",
            Kind::Module => "a module of the job",
        })
    }
}

/// One protected folder, canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Folder {
    kind: Kind,
    path: PathBuf,
}

/// The folders of this host and job that no mount may overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protected {
    /// The most specific first, so that a refusal names the cache rather than the state
    /// folder around it.
    folders: Vec<Folder>,
}

/// Why a mount is not granted.
#[derive(Debug, thiserror::Error)]
pub enum MountRefused {
    /// The mount overlaps one of the host's own folders.
    #[error(
        "operator `{operator}`: the {} mount {} overlaps {kind} ({}): a guest must not reach \
         the host's own files (mount a folder outside it)",
        if *writable { "writable" } else { "read-only" }, mount.display(), folder.display()
    )]
    Overlaps {
        /// The operator.
        operator: OperatorId,
        /// The mount's host folder, as the job file names it (resolved against its folder).
        mount: PathBuf,
        /// Whether it was to be writable.
        writable: bool,
        /// Which folder it overlaps.
        kind: Kind,
        /// That folder, canonical.
        folder: PathBuf,
    },
    /// What was opened is not the folder that was checked.
    #[error(
        "operator `{operator}`: the mount {} changed while it was opened (checked as {}): \
         refused",
        mount.display(), checked.display()
    )]
    Changed {
        /// The operator.
        operator: OperatorId,
        /// The mount's host folder.
        mount: PathBuf,
        /// The canonical folder that was checked.
        checked: PathBuf,
    },
    /// The folder cannot be opened.
    #[error("operator `{operator}`: cannot open the mount {}: {source}", mount.display())]
    Open {
        /// The operator.
        operator: OperatorId,
        /// The mount's host folder.
        mount: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl Protected {
    /// The state folder at `state`, its compiled-module cache at `cache`, and, if the job has
    /// one, the job file's folder `job_folder`.
    pub fn new(state: &Path, cache: &Path, job_folder: Option<&Path>) -> Protected {
        let mut folders = vec![
            Folder {
                kind: Kind::Cache,
                path: canonical(cache),
            },
            Folder {
                kind: Kind::StateFolder,
                path: canonical(state),
            },
        ];
        folders.extend(job_folder.map(|path| Folder {
            kind: Kind::JobFolder,
            path: canonical(path),
        }));
        Protected { folders }
    }

    /// These, and the module files `modules`, which no writable mount may cover.
    pub fn with_modules<'a>(mut self, modules: impl IntoIterator<Item = &'a Path>) -> Protected {
        let modules = modules.into_iter().map(|path| Folder {
            kind: Kind::Module,
            path: canonical(path),
        });
        self.folders.extend(modules);
        self
    }

    /// Every mount of `plan` that overlaps a protected folder, in the plan's order.
    pub fn refusals(&self, plan: &Plan) -> Vec<MountRefused> {
        let mounts = plan
            .operators
            .iter()
            .flat_map(|op| op.mounts.iter().map(move |mount| (&op.id, mount)));
        mounts
            .filter_map(|(operator, mount)| self.check(operator, mount).err())
            .collect()
    }

    /// The canonical folder of `operator`'s `mount`, unless it overlaps a protected folder.
    pub fn check(&self, operator: &OperatorId, mount: &Mount) -> Result<PathBuf, MountRefused> {
        let path = canonical(&mount.host);
        match self.overlapped(&path, mount.writable) {
            Some(folder) => Err(MountRefused::Overlaps {
                operator: operator.clone(),
                mount: mount.host.clone(),
                writable: mount.writable,
                kind: folder.kind,
                folder: folder.path.clone(),
            }),
            None => Ok(path),
        }
    }

    /// The folder a mount of the canonical `path` overlaps, if any: the innermost one it lies
    /// in, else the outermost one it covers, else, if it is writable, the job file's folder or
    /// a module file that it covers.
    fn overlapped(&self, path: &Path, writable: bool) -> Option<&Folder> {
        let job_only = |folder: &Folder| matches!(folder.kind, Kind::JobFolder | Kind::Module);
        let own = |folder: &&Folder| !job_only(folder);
        let mut own_folders = self.folders.iter().filter(own);
        let inside = own_folders.find(|folder| path.starts_with(&folder.path));
        let covered = || {
            let mut outermost_first = self.folders.iter().rev().filter(own);
            outermost_first.find(|folder| folder.path.starts_with(path))
        };
        let job = || {
            let covers = |folder: &&Folder| folder.path.starts_with(path);
            let mut jobs = self.folders.iter().filter(|folder| job_only(folder));
            jobs.find(covers).filter(|_| writable)
        };
        inside.or_else(covered).or_else(job)
    }

    /// Checks `operator`'s `mount`, then opens its folder once, through its canonical path
    /// ([`open_checked`]).
    pub fn open(&self, operator: &OperatorId, mount: &Mount) -> Result<Dir, MountRefused> {
        let checked = self.check(operator, mount)?;
        open_checked(operator, mount, checked)
    }
}

/// Opens `checked`, the canonical folder of `operator`'s `mount` that was checked, and
/// verifies that the handle is that folder: the same device and inode as the path, which is
/// still canonical (no symbolic link swapped in since the check).
fn open_checked(
    operator: &OperatorId,
    mount: &Mount,
    checked: PathBuf,
) -> Result<Dir, MountRefused> {
    let failed = |source| MountRefused::Open {
        operator: operator.clone(),
        mount: mount.host.clone(),
        source,
    };
    let dir = Dir::open_ambient_dir(&checked, cap_std::ambient_authority()).map_err(failed)?;
    let held = dir.dir_metadata().map_err(failed)?;
    let now = std::fs::metadata(&checked).map_err(failed)?;
    let same = (held.dev(), held.ino()) == (now.dev(), now.ino());
    if !same || std::fs::canonicalize(&checked).ok().as_ref() != Some(&checked) {
        return Err(MountRefused::Changed {
            operator: operator.clone(),
            mount: mount.host.clone(),
            checked,
        });
    }
    Ok(dir)
}

/// `path` absolute, with symbolic links, `.` and `..` resolved: of a path that does not exist
/// yet, its nearest existing ancestor's canonical path, then the rest as written (`.` and
/// `..` resolved lexically).
pub fn canonical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    loop {
        if let Ok(found) = std::fs::canonicalize(existing) {
            let rest = absolute.strip_prefix(existing).unwrap_or(Path::new(""));
            return lexical_join(found, rest);
        }
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return absolute,
        }
    }
}

/// `base` joined with `rest`, whose `.` and `..` are resolved lexically.
fn lexical_join(mut base: PathBuf, rest: &Path) -> PathBuf {
    for component in rest.components() {
        match component {
            Component::ParentDir => {
                base.pop();
            }
            Component::Normal(name) => base.push(name),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(host: &Path, writable: bool) -> Mount {
        Mount {
            host: host.to_owned(),
            guest: "/m".to_owned(),
            writable,
        }
    }

    /// A scratch folder holding `job/` (the job file's folder, with `job/out/`) and
    /// `job/.host/cache/`, and the protected folders of a job there.
    fn scratch() -> (tempfile::TempDir, Protected) {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job");
        std::fs::create_dir_all(job.join(".host/cache")).unwrap();
        std::fs::create_dir_all(job.join("out")).unwrap();
        let state = job.join(".host");
        let protected = Protected::new(&state, &state.join("cache"), Some(&job));
        (tmp, protected)
    }

    fn refused_kind(protected: &Protected, host: &Path, writable: bool) -> Option<Kind> {
        let operator: OperatorId = "op".parse().unwrap();
        match protected.check(&operator, &mount(host, writable)) {
            Err(MountRefused::Overlaps { kind, .. }) => Some(kind),
            Err(other) => panic!("{other}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn a_mount_overlapping_the_state_folder_or_the_cache_is_refused_either_way() {
        let (tmp, protected) = scratch();
        let job = tmp.path().join("job");
        for writable in [false, true] {
            let cache = job.join(".host/cache");
            assert_eq!(
                refused_kind(&protected, &cache, writable),
                Some(Kind::Cache)
            );
            let inside = job.join(".host/jobs/x");
            assert_eq!(
                refused_kind(&protected, &inside, writable),
                Some(Kind::StateFolder)
            );
            let around = job.join("out/../.");
            assert_eq!(
                refused_kind(&protected, &around, writable),
                Some(Kind::StateFolder)
            );
        }
    }

    #[test]
    fn a_writable_mount_covering_a_module_file_is_refused_wherever_it_is() {
        let (tmp, protected) = scratch();
        let guests = tmp.path().join("app/guests");
        std::fs::create_dir_all(&guests).unwrap();
        std::fs::write(guests.join("op.wasm"), b"").unwrap();
        let protected = protected.with_modules([guests.join("op.wasm").as_path()]);
        assert_eq!(refused_kind(&protected, &guests, true), Some(Kind::Module));
        let around = tmp.path().join("app");
        assert_eq!(refused_kind(&protected, &around, true), Some(Kind::Module));
        // Reading it is what a job may do; writing beside it, elsewhere, too.
        assert_eq!(refused_kind(&protected, &guests, false), None);
        let beside = tmp.path().join("out");
        assert_eq!(refused_kind(&protected, &beside, true), None);
    }

    #[test]
    fn only_a_writable_mount_covering_the_job_folder_is_refused() {
        let (tmp, protected) = scratch();
        let job = tmp.path().join("job");
        assert_eq!(refused_kind(&protected, &job.join("out"), true), None);
        assert_eq!(refused_kind(&protected, &job.join("new"), true), None);
        let elsewhere = tmp.path().join("elsewhere");
        assert_eq!(refused_kind(&protected, &elsewhere, true), None);
        // Read-only, the job's folder is fine but for the state folder inside it.
        std::fs::create_dir_all(tmp.path().join("other/in")).unwrap();
        let other = Protected::new(
            &tmp.path().join("state"),
            &tmp.path().join("state/cache"),
            Some(&tmp.path().join("other")),
        );
        let folder = tmp.path().join("other");
        assert_eq!(refused_kind(&other, &folder, false), None);
        assert_eq!(refused_kind(&other, &folder, true), Some(Kind::JobFolder));
        // Around both, the state folder is named (and refused read-only too).
        assert_eq!(
            refused_kind(&other, tmp.path(), false),
            Some(Kind::StateFolder)
        );
    }

    #[test]
    fn a_symbolic_link_to_the_cache_is_refused() {
        let (tmp, protected) = scratch();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("job/.host/cache"), &link).unwrap();
        assert_eq!(refused_kind(&protected, &link, false), Some(Kind::Cache));
        let below = link.join("not-yet");
        assert_eq!(refused_kind(&protected, &below, true), Some(Kind::Cache));
    }

    #[test]
    fn a_folder_swapped_for_a_link_to_the_cache_after_its_check_is_not_opened() {
        let (tmp, protected) = scratch();
        let operator: OperatorId = "op".parse().unwrap();
        let out = tmp.path().join("job/out");
        let mount = mount(&out, true);
        let checked = protected.check(&operator, &mount).unwrap();
        std::fs::remove_dir(&out).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("job/.host/cache"), &out).unwrap();
        match open_checked(&operator, &mount, checked) {
            Err(MountRefused::Changed { .. }) => {}
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("the swapped-in link was followed"),
        }
        assert!(matches!(
            protected.open(&operator, &mount),
            Err(MountRefused::Overlaps {
                kind: Kind::Cache,
                ..
            })
        ));
    }

    #[test]
    fn open_returns_the_checked_folder() {
        let (tmp, protected) = scratch();
        let operator: OperatorId = "op".parse().unwrap();
        let out = tmp.path().join("job/out");
        std::fs::write(out.join("a"), "a").unwrap();
        let dir = protected.open(&operator, &mount(&out, true)).unwrap();
        assert_eq!(dir.read_to_string("a").unwrap(), "a");
    }
}
