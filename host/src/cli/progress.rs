//! A spinner on the terminal for work that can take a while (a savepoint of large state,
//! verifying a point for `inspect` or a restore): shown on stderr only when stderr is a
//! terminal, so that scripts, pipes and logs never see it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the spinner moves.
const TICK_MS: u64 = 120;

/// Runs `work` under a spinner saying `message` (when stderr is a terminal).
pub(super) fn spinning<T>(message: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let spinner = ProgressBar::new_spinner().with_message(message.to_owned());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(Duration::from_millis(TICK_MS));
    let done = work();
    spinner.finish_and_clear();
    done
}
