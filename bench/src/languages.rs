//! Operators in Python and JavaScript against the same operators in Rust, in one run: the
//! tokenizer's and the counter's records per second (`process` called directly, on the same
//! batches for all three), the cost of one call of `process` on an empty batch, the component's
//! size, its cold compile, and the start of a job with the compiled-module cache warm.
//!
//! The components are the examples `tokenizer` and `counter_v1`: `<name>.wasm` (Rust),
//! `<name>_py.wasm` (`sdk/python/build.sh`), `<name>_js.wasm` (`sdk/js/build.sh`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use host::engine::bindings::Batch;
use host::engine::{CacheMode, Engine, Limits, Module};
use host::ids::JobId;
use host::store::Store;
use host::topology::Role;

use crate::batches::BatchOf;
use crate::jobs::{SOURCE_MOUNT, build, edge, fastest, lone_instance, operator, write_input};
use crate::{Row, Sizes};

/// Key groups of the counter's state, as a job's default.
/// Records per batch, as the line source and channels move them.
const BATCH_RECORDS: usize = 1_024;
/// Calls of `process` on an empty batch that the per-call cost is averaged over.
const EMPTY_CALLS: u32 = 200;

/// A guest language: its name and the suffix of its components' names.
#[derive(Clone, Copy)]
struct Language {
    name: &'static str,
    suffix: &'static str,
}

const RUST: Language = Language {
    name: "Rust",
    suffix: "",
};
const LANGUAGES: [Language; 3] = [
    RUST,
    Language {
        name: "Python",
        suffix: "_py",
    },
    Language {
        name: "JavaScript",
        suffix: "_js",
    },
];

/// The examples measured: both, or the tokenizer alone in a quick run.
fn examples(sizes: Sizes) -> &'static [&'static str] {
    if sizes.languages_quick {
        &["tokenizer"]
    } else {
        &["tokenizer", "counter_v1"]
    }
}

impl Language {
    fn component(self, guests: &Path, example: &str) -> PathBuf {
        guests.join(format!("{example}{}.wasm", self.suffix))
    }
}

/// What was measured of one language.
#[derive(Default)]
struct Figures {
    /// Cold compile of the examples, ms.
    compile_ms: f64,
    /// Size of the tokenizer's component, bytes.
    bytes: f64,
    /// Building the job `lines -> tokenizer [-> counter] -> null sink` with the cache warm, ms.
    start_ms: f64,
    /// Runs of each example over the whole input.
    runs: [Vec<Duration>; 2],
    /// One call of `process` on an empty batch, µs.
    call_us: f64,
}

/// Every measurement of every language; the compiled modules are then shared into `share`
/// (the end-to-end tests' cache, which CI fills next), if given.
pub async fn languages(
    guests: &Path,
    scratch: &Path,
    sizes: Sizes,
    share: Option<&Path>,
) -> anyhow::Result<Vec<Row>> {
    let words = sizes.language_words;
    let dir = scratch.join("languages");
    let text = write_input(&dir, words, sizes.distinct_keys.min(words))?;
    let lines = line_batches(&text);
    let tokens = token_batches(&text);
    let examples = examples(sizes);
    if let Some(share) = share {
        for language in LANGUAGES {
            share_key(&dir.join(language.name).join("home"), share)?;
        }
    }
    let mut figures = cold_compiles(guests, &dir, examples, sizes.languages_quick).await?;
    for (language, figures) in LANGUAGES.iter().zip(&mut figures) {
        figures.start_ms = cached_start(*language, guests, &dir, examples).await?;
        let tokenizer = language.component(guests, "tokenizer");
        figures.bytes = std::fs::metadata(&tokenizer)
            .with_context(|| format!("{}: build it first", tokenizer.display()))?
            .len() as f64;
    }
    for _ in 0..sizes.repetitions {
        for (language, figures) in LANGUAGES.iter().zip(&mut figures) {
            let store = Store::open(dir.join(language.name).join("home"))?;
            let engine = Engine::new(
                &store.layout().cache(),
                &store.layout().cache_key(),
                CacheMode::ReadOnly,
            )
            .map_err(|e| anyhow!("{e:#}"))?;
            for (i, (example, input)) in examples.iter().zip([&lines, &tokens]).enumerate() {
                let module = engine.load(&language.component(guests, example), Role::Operator)?;
                let (run, call_us) = run_batches(&engine, &module, input, words).await?;
                figures.runs[i].push(run);
                if i == 0 {
                    figures.call_us = call_us;
                }
            }
        }
    }
    if let Some(share) = share {
        for language in LANGUAGES {
            share_cache(&dir.join(language.name).join("home/cache"), share)?;
        }
    }
    explain(&figures, examples, words);
    Ok(rows(&figures, examples, words))
}

/// The input's lines, as the line source emits them: empty keys, batches of `BATCH_RECORDS`.
fn line_batches(text: &str) -> Vec<Batch> {
    let records = text
        .lines()
        .enumerate()
        .map(|(i, line)| (&[][..], line.as_bytes(), i));
    batches(records, false)
}

/// The input's words, as the tokenizer emits them and a key-by edge delivers them: key and
/// value the word, with its key group.
fn token_batches(text: &str) -> Vec<Batch> {
    let words = text.split_whitespace().enumerate();
    batches(words.map(|(i, w)| (w.as_bytes(), w.as_bytes(), i)), true)
}

fn batches<'a>(
    records: impl Iterator<Item = (&'a [u8], &'a [u8], usize)>,
    keyed: bool,
) -> Vec<Batch> {
    let mut all = vec![BatchOf::new(keyed)];
    for (key, value, timestamp) in records {
        let mut batch = all.last_mut().expect("one batch at least");
        if batch.len() == BATCH_RECORDS {
            all.push(BatchOf::new(keyed));
            batch = all.last_mut().expect("just pushed");
        }
        batch.push(key, value, timestamp as i64);
    }
    all.into_iter().map(BatchOf::finish).collect()
}

/// Compiles each language's `examples` into an empty cache of its own, timing them; the
/// languages one after another, or all at once when `concurrently` (a quick run: the figures
/// mean nothing then, and a cold Python or JavaScript compile takes tens of seconds).
async fn cold_compiles(
    guests: &Path,
    dir: &Path,
    examples: &'static [&'static str],
    concurrently: bool,
) -> anyhow::Result<Vec<Figures>> {
    let compile = |language: Language| {
        let (guests, dir) = (guests.to_owned(), dir.to_owned());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Figures> {
            let store = Store::open(dir.join(language.name).join("home"))?;
            let engine = Engine::new(
                &store.layout().cache(),
                &store.layout().cache_key(),
                CacheMode::ReadWrite,
            )
            .map_err(|e| anyhow!("{e:#}"))?;
            let started = Instant::now();
            for example in examples {
                engine.load(&language.component(&guests, example), Role::Operator)?;
            }
            let figures = Figures {
                compile_ms: started.elapsed().as_secs_f64() * 1e3,
                ..Figures::default()
            };
            // The rest of the job `cached_start` builds, so that its cache is warm.
            engine.load(&guests.join("line_source.wasm"), Role::Source)?;
            engine.load(&guests.join("null_sink.wasm"), Role::Sink)?;
            Ok(figures)
        })
    };
    let mut figures = Vec::new();
    if concurrently {
        let tasks: Vec<_> = LANGUAGES.into_iter().map(compile).collect();
        for task in tasks {
            figures.push(task.await??);
        }
    } else {
        for language in LANGUAGES {
            figures.push(compile(language).await??);
        }
    }
    Ok(figures)
}

/// Building `lines -> tokenizer [-> counter (key-by)] -> null sink` in `language`, on a new
/// engine whose cache holds every module: what a restart of such a job costs before it runs.
async fn cached_start(
    language: Language,
    guests: &Path,
    dir: &Path,
    examples: &[&str],
) -> anyhow::Result<f64> {
    let source = guests.join("line_source.wasm");
    let mut text = operator("lines", "source", &source, 1, SOURCE_MOUNT);
    let mut from = "lines";
    for (example, partition) in examples.iter().zip(["forward", "key-by"]) {
        let module = language.component(guests, example);
        text += &operator(example, "operator", &module, 1, "");
        text += &edge(from, example, partition);
        from = example;
    }
    text += &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "");
    text += &edge(from, "sink", "forward");
    let store = Store::open(dir.join(language.name).join("home"))?;
    let started = Instant::now();
    let engine = Arc::new(
        Engine::new(
            &store.layout().cache(),
            &store.layout().cache_key(),
            CacheMode::ReadWrite,
        )
        .map_err(|e| anyhow!("{e:#}"))?,
    );
    let job = build(&engine, &store, dir, &text, JobId::generate()).await?;
    let start_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(job);
    Ok(start_ms)
}

/// Runs every batch through a fresh instance of `module`; returns how long that took, and the
/// cost of one call on an empty batch afterwards, µs. Checks that `words` records came out.
async fn run_batches(
    engine: &Engine,
    module: &Module,
    batches: &[Batch],
    words: usize,
) -> anyhow::Result<(Duration, f64)> {
    let mut instance = lone_instance(engine, module, "measured", Limits::default()).await?;
    let mut out = 0;
    let started = Instant::now();
    for batch in batches {
        out += black_box(instance.process(batch).await?).timestamps.len();
    }
    let elapsed = started.elapsed();
    if out != words {
        bail!(
            "{}: {out} records out of {words} words",
            module.path.display()
        );
    }
    let empty = BatchOf::new(false).finish();
    let started = Instant::now();
    for _ in 0..EMPTY_CALLS {
        black_box(instance.process(&empty).await?);
    }
    let call_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(EMPTY_CALLS);
    Ok((elapsed, call_us))
}

/// Gives the state folder `home` (made owner-only if missing) the key of the shared cache's
/// records, `<share>.key`, made first if there is none (as the end-to-end tests make it), so
/// that the records of the modules compiled in `home` verify wherever `share` hands them on.
fn share_key(home: &Path, share: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let key = share.with_extension("key");
    let mut options = std::fs::OpenOptions::new();
    match options.write(true).create_new(true).mode(0o600).open(&key) {
        Ok(mut file) => std::io::Write::write_all(&mut file, &rand::random::<[u8; 32]>())?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("making {}", key.display())),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)?;
    std::fs::copy(&key, home.join("cache.key"))
        .with_context(|| format!("copying {} into {}", key.display(), home.display()))?;
    Ok(())
}

/// Links (or copies) every compiled module of `cache` that `share` lacks into `share`.
fn share_cache(cache: &Path, share: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(share).with_context(|| format!("creating {}", share.display()))?;
    for entry in std::fs::read_dir(cache).with_context(|| format!("reading {}", cache.display()))? {
        let from = entry?.path();
        let to = share.join(from.file_name().expect("a file of the cache"));
        if to.exists() {
            continue;
        }
        // Through a temporary name: a reader of `share` sees a whole file or none.
        let partial = share.join(format!(".bench-{}.partial", std::process::id()));
        std::fs::copy(&from, &partial)
            .and_then(|_| std::fs::rename(&partial, &to))
            .with_context(|| format!("sharing {} into {}", from.display(), share.display()))?;
    }
    Ok(())
}

/// The rows: for Python and JavaScript, each figure against Rust's (ratios: higher is better).
fn rows(figures: &[Figures], examples: &[&str], words: usize) -> Vec<Row> {
    let rust = &figures[0];
    let rate = |runs: &[Duration]| words as f64 / fastest(runs).as_secs_f64();
    let mut rows = Vec::new();
    for (language, figures) in LANGUAGES.iter().zip(figures).skip(1) {
        for (i, example) in examples.iter().enumerate() {
            let (value, baseline) = (rate(&figures.runs[i]), rate(&rust.runs[i]));
            rows.push(Row {
                name: format!("{} {example}, `process` on batches of 1 024", language.name),
                value,
                unit: "records/s",
                baseline: Some(baseline),
                baseline_name: "the Rust guest, same batches",
                ratio: Some(value / baseline),
                target: "",
                met: None,
            });
        }
        let name = |what: &str| format!("{} {what}", language.name);
        rows.push(compared(
            name("`process` of an empty batch"),
            (figures.call_us, rust.call_us, "µs"),
            "the Rust guest",
        ));
        rows.push(compared(
            name("tokenizer component size"),
            (figures.bytes / 1e6, rust.bytes / 1e6, "MB"),
            "the Rust guest",
        ));
        rows.push(compared(
            name(&format!("{}, cold compile", examples.join(" + "))),
            (figures.compile_ms, rust.compile_ms, "ms"),
            "the Rust guests",
        ));
        let mut start = compared(
            name("job start, compiled-module cache warm"),
            (figures.start_ms, rust.start_ms, "ms"),
            "the same job in Rust",
        );
        start.target = "≤ 1 000 ms";
        start.met = Some(figures.start_ms <= 1_000.0);
        rows.push(start);
    }
    rows
}

/// Where the time of each record goes, per language: the fixed cost of a call (an empty
/// batch) spread over a batch, and the rest (the guest's work on the record, and copying it
/// across, which the Rust guest pays too).
fn explain(figures: &[Figures], examples: &[&str], words: usize) {
    for (language, figures) in LANGUAGES.iter().zip(figures) {
        for (example, runs) in examples.iter().zip(&figures.runs) {
            let per_record_us = fastest(runs).as_secs_f64() * 1e6 / words as f64;
            let call_us = figures.call_us / BATCH_RECORDS as f64;
            eprintln!(
                "bench: languages: {} {example}: {per_record_us:.3} µs/record, of which the call \
                 {call_us:.3} µs (empty-batch call / {BATCH_RECORDS}), the record {:.3} µs",
                language.name,
                per_record_us - call_us,
            );
        }
    }
}

/// A row of a cost (lower is better) against Rust's: the ratio is Rust's over this one's.
fn compared(
    name: String,
    (value, baseline, unit): (f64, f64, &'static str),
    of: &'static str,
) -> Row {
    Row {
        name,
        value,
        unit,
        baseline: Some(baseline),
        baseline_name: of,
        ratio: Some(baseline / value),
        target: "",
        met: None,
    }
}
