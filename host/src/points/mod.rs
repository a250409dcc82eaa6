//! What a user does with points, besides resuming from them.
//!
//! - [`state`]: `host state`: an operator's state read, edited, bootstrapped from data or
//!   repartitioned, offline, by the host itself (no guest code).

pub mod state;
