//! The WebAssembly engine: one `wasmtime::Engine` per process, components compiled once per
//! content hash and cached on disk, and an epoch ticker that bounds every guest call.
//!
//! Where a record's journey starts being WebAssembly: the runtime asks the `Engine` to
//! [`load`](Engine::load) each operator's module (checked against its role's world before
//! anything runs) and to [`instantiate`](Engine::instantiate) one
//! [`Instance`] per subtask, each with its own `Store`, memory limit and
//! grants.

pub mod bindings;
pub mod borrowed;
pub mod guest_log;
pub mod instance;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::ids::Role;
pub use crate::ids::sha256_hex;
pub use instance::{Grants, GuestError, Instance, Limits};

/// Whether engines made from now on tell `perf` the names of the guests' compiled functions,
/// in `/tmp/perf-<pid>.map` (as `wasmtime run --profile=perfmap` does). Process-wide, as that
/// map is: the binary sets it (`--profile perfmap`) before it makes an engine.
static PERF_MAP: AtomicBool = AtomicBool::new(false);

/// Makes every engine made from now on name the guests' compiled functions for `perf` (guests
/// keep their names only when built without `strip`).
pub fn name_functions_for_perf() {
    PERF_MAP.store(true, Ordering::Relaxed);
}

/// How often the epoch advances: the granularity of guest call deadlines.
pub const EPOCH_TICK_MS: u64 = 10;

/// A failure to load or instantiate a module, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The file cannot be read.
    #[error("{path}: cannot read module: {source}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid component.
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The module file.
        path: PathBuf,
        /// Wasmtime's reason.
        reason: String,
    },
    /// A valid component that does not implement the world of its role.
    #[error("{path}: does not implement the `{world}` world of jobhost:operator@0.3.1: {reason}")]
    WrongWorld {
        /// The module file.
        path: PathBuf,
        /// The world its role requires.
        world: &'static str,
        /// What is missing or mistyped.
        reason: String,
    },
    /// A grant's folder cannot be opened.
    #[error("{path}: cannot grant folder to the guest: {reason}")]
    Grant {
        /// The host folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Instantiation failed (e.g. the memory limit is below the module's minimum).
    #[error("cannot instantiate {module}: {reason}")]
    Instantiate {
        /// The module file.
        module: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What each `Store` carries: WASI context, resource table, and limits.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Epoch ticks the current call may still use before it is interrupted.
    ticks_left: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A module compiled and linked for one role, ready to instantiate many times.
#[derive(Clone)]
pub struct Module {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the `.wasm` file, lower-case hex.
    pub sha256: String,
    /// The role it was checked against.
    pub role: Role,
    pre: instance::RolePre,
}

impl Module {
    /// Whether it is an operator that implements `live-operator`: a live swap restores it
    /// beside the running module and then hands it only what changed (`catch-up`).
    pub fn catches_up(&self) -> bool {
        matches!(self.pre, instance::RolePre::Operator(_, Some(_)))
    }
}

/// How the engine uses its compiled-module cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Load compiled modules from the cache, and add those it compiles at once.
    ReadWrite,
    /// Load compiled modules from the cache; add those it compiles only when told
    /// ([`Engine::write_cache`]), once the job they are for really starts: a refused start
    /// changes no file.
    Deferred,
    /// Load compiled modules from the cache, but write nothing: a dry run changes no file.
    ReadOnly,
}

/// The process-wide WebAssembly engine.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    cache_mode: CacheMode,
    /// Compiled, not yet cached ([`CacheMode::Deferred`]): where each goes, and what.
    uncached: std::sync::Mutex<Vec<(PathBuf, Component)>>,
    _ticker: EpochTicker,
}

impl Engine {
    /// An engine whose compiled components are cached in `cache_dir`, used as `cache_mode` says.
    pub fn new(cache_dir: &Path, cache_mode: CacheMode) -> wasmtime::Result<Engine> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        if PERF_MAP.load(Ordering::Relaxed) {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // Guests built for wasm32-wasip2 import WASI; what they may reach is decided per
        // instance by its `WasiCtx`, which grants nothing but the job file's mounts.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Engine {
            engine,
            linker,
            cache_dir: cache_dir.to_owned(),
            cache_mode,
            uncached: std::sync::Mutex::default(),
            _ticker: ticker,
        })
    }

    /// Reads, compiles (or loads from the cache) and links the component at `path`, checking
    /// that it implements the world of `role`.
    pub fn load(&self, path: &Path, role: Role) -> Result<Module, EngineError> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Read {
            path: path.to_owned(),
            source,
        })?;
        let sha256 = sha256_hex(&bytes);
        let component = self
            .compile_cached(&bytes, &sha256)
            .map_err(|e| EngineError::Invalid {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let pre = instance::RolePre::new(&self.linker, &component, role).map_err(|e| {
            EngineError::WrongWorld {
                path: path.to_owned(),
                world: instance::world_name(role),
                reason: format!("{e:#}"),
            }
        })?;
        Ok(Module {
            path: path.to_owned(),
            sha256,
            role,
            pre,
        })
    }

    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        // XXH3, not `DefaultHasher`, whose output may change with the Rust release: the name
        // must stay the same for as long as the engine's compatibility does.
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let cached = self
            .cache_dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if cached.exists() {
            // SAFETY: only this host writes the cache folder (owner-only, inside the state
            // folder), each file atomically, from `Component::serialize` of this engine
            // configuration; the file name carries the engine's compatibility hash.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), "ignoring unusable cached module: {e:#}")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        match self.cache_mode {
            CacheMode::ReadOnly => {}
            CacheMode::ReadWrite => cache(&cached, &component),
            CacheMode::Deferred => {
                let mut uncached = self.uncached.lock().expect("not poisoned");
                uncached.push((cached, component.clone()));
            }
        }
        Ok(component)
    }

    /// Forgets the modules compiled since the cache was last written, unwritten
    /// ([`CacheMode::Deferred`]): those of a live upgrade that did not happen.
    pub fn discard_uncached(&self) {
        self.uncached.lock().expect("not poisoned").clear();
    }

    /// Writes the modules compiled so far into the cache ([`CacheMode::Deferred`]).
    pub fn write_cache(&self) {
        let uncached = std::mem::take(&mut *self.uncached.lock().expect("not poisoned"));
        for (path, component) in uncached {
            cache(&path, &component);
        }
    }
}

/// Writes a compiled module into the cache; a failure only costs a later compile.
fn cache(path: &Path, component: &Component) {
    let written = component
        .serialize()
        .map_err(|e| format!("{e:#}"))
        // Complete or absent: loading a torn file would be unsound.
        .and_then(|bytes| crate::durable::write_file(path, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "cannot cache compiled module: {e}");
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK_MS`]; joined on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .expect("spawning the epoch ticker");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
