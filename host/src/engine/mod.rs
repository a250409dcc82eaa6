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
mod cache;
pub mod guest_log;
pub mod instance;
pub mod store_limits;
pub mod time;
mod wasi;
mod world;

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
pub use instance::{GuestError, Instance, Limits};
pub use time::TimerRequest;
pub use wasi::Grants;

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
    #[error("{path}: does not implement the `{world}` world of jobhost:operator@0.3.2: {reason}")]
    WrongWorld {
        /// The module file.
        path: PathBuf,
        /// The world its role requires.
        world: &'static str,
        /// What is missing or mistyped.
        reason: String,
    },
    /// `host compile` compiled a module but could not keep it in the cache.
    #[error(
        "{path}: compiled, but not kept in the compiled-module cache {cache} (see the warning above)"
    )]
    NotCached {
        /// The module file.
        path: PathBuf,
        /// Where it should have gone.
        cache: PathBuf,
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
    /// What the guest sees of time, and asked of its timers during the current call.
    time: time::GuestTime,
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
    pre: world::RolePre,
}

impl Module {
    /// Whether it is an operator that implements `live-operator`: a live swap restores it
    /// beside the running module and then hands it only what changed (`catch-up`).
    pub fn catches_up(&self) -> bool {
        self.pre.catches_up()
    }

    /// Whether it is an operator that keeps timers (`timed-operator`).
    pub fn keeps_timers(&self) -> bool {
        self.pre.keeps_timers()
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

/// What [`Engine::compile`] did with a module.
#[derive(Debug)]
pub struct Compiled {
    /// The SHA-256 of the module's bytes, in lower-case hex.
    pub sha256: String,
    /// It was in the cache already: nothing was compiled.
    pub was_cached: bool,
}

/// The process-wide WebAssembly engine.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: cache::Cache,
    cache_mode: CacheMode,
    /// Compiled, not yet cached ([`CacheMode::Deferred`]): where each goes, and what.
    uncached: std::sync::Mutex<Vec<(PathBuf, Component)>>,
    _ticker: EpochTicker,
}

impl Engine {
    /// An engine whose compiled components are cached in `cache_dir`, used as `cache_mode`
    /// says, each file vouched for by a record keyed with the key in `cache_key` (made at the
    /// first write to the cache if there is none).
    pub fn new(
        cache_dir: &Path,
        cache_key: &Path,
        cache_mode: CacheMode,
    ) -> wasmtime::Result<Engine> {
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
        // Time, for every instance: a component that imports neither is not affected.
        type Own = wasmtime::component::HasSelf<HostState>;
        bindings::timed_operator::jobhost::operator::timers::add_to_linker::<_, Own>(
            &mut linker,
            |state| state,
        )?;
        bindings::timed_source::jobhost::operator::source_time::add_to_linker::<_, Own>(
            &mut linker,
            |state| state,
        )?;
        let ticker = EpochTicker::start(&engine);
        Ok(Engine {
            engine,
            linker,
            cache: cache::Cache::open(cache_dir, cache_key),
            cache_mode,
            uncached: std::sync::Mutex::default(),
            _ticker: ticker,
        })
    }

    /// Reads, compiles (or loads from the cache) and links the component at `path`, checking
    /// that it implements the world of `role`.
    pub fn load(&self, path: &Path, role: Role) -> Result<Module, EngineError> {
        let (bytes, sha256) = read_module(path)?;
        let (component, _) = self.compile_cached(path, &bytes, &sha256)?;
        let pre = world::RolePre::new(&self.linker, &component, role).map_err(|e| {
            EngineError::WrongWorld {
                path: path.to_owned(),
                world: world::world_name(role),
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

    /// Compiles the component at `path` into the compiled-module cache, if it is not there
    /// yet (`host compile`: so that a job's first start does not wait for it). Says whether it
    /// was.
    pub fn compile(&self, path: &Path) -> Result<Compiled, EngineError> {
        let (bytes, sha256) = read_module(path)?;
        let (_, was_cached) = self.compile_cached(path, &bytes, &sha256)?;
        let cached = self.cache.path(&self.engine, &sha256);
        // A failed cache write is only a warning to a run; here it is the whole point.
        if !was_cached && self.cache.load(&self.engine, &cached).is_none() {
            return Err(EngineError::NotCached {
                path: path.to_owned(),
                cache: cached,
            });
        }
        Ok(Compiled { sha256, was_cached })
    }

    /// The component of `bytes` (read from `path`), from the cache or compiled; `true` if it
    /// came from the cache.
    fn compile_cached(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), EngineError> {
        let cached = self.cache.path(&self.engine, sha256);
        if let Some(component) = self.cache.load(&self.engine, &cached) {
            return Ok((component, true));
        }
        // An interpreter's component (Python, JavaScript) takes tens of seconds: say why the
        // start waits, and how to have it done beforehand.
        tracing::info!(
            "compiling {} (not in the compiled-module cache yet; `host compile` does it ahead \
             of a run)",
            path.display()
        );
        let component = Component::new(&self.engine, bytes).map_err(|e| EngineError::Invalid {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        match self.cache_mode {
            CacheMode::ReadOnly => {}
            CacheMode::ReadWrite => self.cache.write(&cached, &component),
            CacheMode::Deferred => {
                let mut uncached = self.uncached.lock().expect("not poisoned");
                uncached.push((cached, component.clone()));
            }
        }
        Ok((component, false))
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
            self.cache.write(&path, &component);
        }
    }
}

/// The bytes of the module at `path`, and their SHA-256.
fn read_module(path: &Path) -> Result<(Vec<u8>, String), EngineError> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Read {
        path: path.to_owned(),
        source,
    })?;
    let sha256 = sha256_hex(&bytes);
    Ok((bytes, sha256))
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
