//! `host compile`: components compiled ahead of a run, into the state folder's compiled-module
//! cache.

use std::path::PathBuf;
use std::process::ExitCode;

use host::engine::CacheMode;
use host::store::Store;

use super::start::engine;

/// `host compile`: each module into the compiled-module cache, unless it is there; a module
/// that is no component stops it, naming the module (those before it stay compiled).
pub(super) fn compile(store: &Store, modules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let engine = engine(store, CacheMode::ReadWrite)?;
    for module in modules {
        let started = std::time::Instant::now();
        let compiled = engine.compile(module)?;
        let short = &compiled.sha256[..12];
        if compiled.was_cached {
            println!("{} ({short}): already compiled", module.display());
        } else {
            let ms = started.elapsed().as_millis();
            println!("{} ({short}): compiled in {ms} ms", module.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
