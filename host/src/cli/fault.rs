//! `host run`'s fault-injection flags, for tests: they exist only in a build with the
//! `fault-injection` feature (as the README's test command builds the host); see `fault.rs`
//! of the library.

use host::store::Store;
use host::store::object::ObjectPoints;

/// `--crash-at PHASE:N`, `--fail-write-at PHASE:N` and `--stall-at PHASE:MS` (hidden; none
/// without the feature).
#[derive(Debug, Default, clap::Args)]
pub struct FaultArgs {
    /// Fault injection for tests: abort the process at PHASE of checkpoint N or later
    /// (state-write, metadata-written, metadata-put, published, sink-committed, restored,
    /// sink-recovered, swap-staged, ended).
    #[cfg(feature = "fault-injection")]
    #[arg(long, value_name = "PHASE:N", hide = true, value_parser = parse)]
    crash_at: Option<(host::fault::Phase, u64)>,
    /// Fault injection for tests: fail the write at PHASE of checkpoint N with "no space
    /// left on device" (state-write, metadata-written).
    #[cfg(feature = "fault-injection")]
    #[arg(long, value_name = "PHASE:N", hide = true, value_parser = parse)]
    fail_write_at: Option<(host::fault::Phase, u64)>,
    /// Fault injection for tests: stall MS milliseconds at PHASE of every checkpoint (as a slow
    /// disk or a slow guest would; swap-staged: changes pile up before a live swap catches up;
    /// ended: the process lingers after its job ended, before it lets go of it).
    #[cfg(feature = "fault-injection")]
    #[arg(long, value_name = "PHASE:MS", hide = true, value_parser = parse)]
    stall_at: Option<(host::fault::Phase, u64)>,
}

impl FaultArgs {
    /// `store`, with the faults asked for injected at the phases of every checkpoint.
    #[cfg(feature = "fault-injection")]
    pub fn inject(self, store: Store) -> Store {
        use host::fault::Phase;
        /// What a full disk answers.
        const ENOSPC: i32 = 28;
        let FaultArgs {
            crash_at,
            fail_write_at,
            stall_at,
        } = self;
        if crash_at.is_none() && fail_write_at.is_none() && stall_at.is_none() {
            return store;
        }
        store.with_faults(std::sync::Arc::new(move |phase: Phase, checkpoint| {
            if let Some((_, ms)) = stall_at.filter(|&(at, _)| at == phase) {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if crash_at.is_some_and(|(at, n)| at == phase && checkpoint.0 >= n) {
                eprintln!(
                    "crash injected at {} of checkpoint {checkpoint}",
                    phase.name()
                );
                std::process::abort();
            }
            if fail_write_at == Some((phase, checkpoint.0)) {
                return Err(std::io::Error::from_raw_os_error(ENOSPC));
            }
            Ok(())
        }))
    }

    /// `store`: a build without the `fault-injection` feature injects none.
    #[cfg(not(feature = "fault-injection"))]
    pub fn inject(self, store: Store) -> Store {
        store
    }
}

/// For tests: `HOST_TEST_MULTIPART_THRESHOLD_BYTES` lowers the size above which a state object
/// goes up as a multipart upload, so that a crash can land in the middle of one (a build
/// without the `fault-injection` feature ignores it).
pub fn multipart_threshold(points: ObjectPoints) -> ObjectPoints {
    #[cfg(feature = "fault-injection")]
    if let Some(bytes) = std::env::var("HOST_TEST_MULTIPART_THRESHOLD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return points.with_multipart_threshold(bytes);
    }
    points
}

/// Reads a fault-injection point `PHASE:N` (or `PHASE:MS`).
#[cfg(feature = "fault-injection")]
fn parse(text: &str) -> Result<(host::fault::Phase, u64), String> {
    let (phase, n) = text.split_once(':').ok_or("expected PHASE:N")?;
    Ok((
        phase.parse()?,
        n.parse().map_err(|_| format!("`{n}` is not a number"))?,
    ))
}
