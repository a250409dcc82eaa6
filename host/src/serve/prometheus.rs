//! `/metrics`: every running job's counters in the Prometheus (OpenMetrics) text format,
//! encoded by `prometheus-client` from samples taken through the jobs' control sockets; and,
//! as exporters do so that a scrape shows the server up with no job running, the host's build
//! (`jobhost_build_info{version}`) and its jobs by state (`jobhost_jobs{state}`, every state
//! listed, 0 included).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::jobs::{JobRow, Phase};
use crate::metrics::{Sample, SubtaskSample};

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubtaskLabels {
    job: String,
    operator: String,
    subtask: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperatorLabels {
    job: String,
    operator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type Counts = Family<SubtaskLabels, Counter>;
type Seconds = Family<SubtaskLabels, Counter<f64, std::sync::atomic::AtomicU64>>;
type JobGauge = Family<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;
type SubtaskGauge = Family<SubtaskLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// Metric families by name, each with what it reads from a sample.
type Named<F, M> = Vec<(&'static str, F, M)>;
type OfSubtask = fn(&SubtaskSample) -> u64;
/// A subtask's gauge, where it has a value.
type GaugeOfSubtask = fn(&SubtaskSample) -> Option<f64>;
type OfCheckpoint = fn(&crate::metrics::CheckpointStat) -> f64;

/// The families of one scrape, registered under their names.
struct Families {
    counts: Named<OfSubtask, Counts>,
    seconds: Named<OfSubtask, Seconds>,
    gauges: Named<GaugeOfSubtask, SubtaskGauge>,
    restarts: Family<JobLabels, Counter>,
    checkpoint: Named<OfCheckpoint, JobGauge>,
    state_bytes: Family<OperatorLabels, Gauge>,
}

/// The gauges of each subtask: where it is in event time, and its timers.
fn subtask_gauges() -> Named<GaugeOfSubtask, SubtaskGauge> {
    vec![
        (
            "watermark_milliseconds",
            |s| s.watermark.map(|w| w as f64),
            SubtaskGauge::default(),
        ),
        (
            "watermark_lag_seconds",
            |s| s.watermark_lag_ms.map(|ms| ms as f64 / 1e3),
            SubtaskGauge::default(),
        ),
        (
            "timers_pending",
            |s| Some(s.timers_pending as f64),
            SubtaskGauge::default(),
        ),
    ]
}

/// The gauges of each job's latest checkpoint.
fn checkpoint_gauges() -> Named<OfCheckpoint, JobGauge> {
    vec![
        (
            "last_checkpoint_duration_seconds",
            |c| c.duration_ms as f64 / 1e3,
            JobGauge::default(),
        ),
        (
            "last_checkpoint_alignment_seconds",
            |c| c.alignment_ms as f64 / 1e3,
            JobGauge::default(),
        ),
        (
            "last_checkpoint_bytes",
            |c| c.bytes as f64,
            JobGauge::default(),
        ),
        (
            "last_checkpoint_id",
            |c| c.checkpoint as f64,
            JobGauge::default(),
        ),
    ]
}

impl Families {
    fn new() -> Self {
        Families {
            counts: vec![
                ("records_in", |s| s.records_in, Counts::default()),
                ("records_out", |s| s.records_out, Counts::default()),
                ("batches_in", |s| s.batches_in, Counts::default()),
                ("batches_out", |s| s.batches_out, Counts::default()),
                ("guest_traps", |s| s.traps, Counts::default()),
                ("records_late", |s| s.records_late, Counts::default()),
            ],
            seconds: vec![
                ("backpressure_seconds", |s| s.blocked_ns, Seconds::default()),
                ("busy_seconds", |s| s.busy_ns, Seconds::default()),
                (
                    "checkpoint_sync_seconds",
                    |s| s.checkpoint_sync_ns,
                    Seconds::default(),
                ),
            ],
            gauges: subtask_gauges(),
            restarts: Family::default(),
            checkpoint: checkpoint_gauges(),
            state_bytes: Family::default(),
        }
    }

    fn add(&self, sample: &Sample) {
        let job = sample.job.to_string();
        for s in &sample.subtasks {
            let labels = SubtaskLabels {
                job: job.clone(),
                operator: s.operator.to_string(),
                subtask: s.index.to_string(),
            };
            for (_, value, family) in &self.counts {
                family.get_or_create(&labels).inc_by(value(s));
            }
            for (_, ns, family) in &self.seconds {
                family.get_or_create(&labels).inc_by(ns(s) as f64 / 1e9);
            }
            for (_, value, family) in &self.gauges {
                if let Some(value) = value(s) {
                    family.get_or_create(&labels).set(value);
                }
            }
        }
        let labels = JobLabels { job: job.clone() };
        self.restarts.get_or_create(&labels).inc_by(sample.restarts);
        let Some(last) = sample.checkpoints.last() else {
            return;
        };
        for (_, value, family) in &self.checkpoint {
            family.get_or_create(&labels).set(value(last));
        }
        for (operator, bytes) in &last.operator_bytes {
            let labels = OperatorLabels {
                job: job.clone(),
                operator: operator.to_string(),
            };
            self.state_bytes.get_or_create(&labels).set(*bytes as i64);
        }
    }

    fn register(self, registry: &mut Registry) {
        for (name, _, family) in self.counts {
            registry.register(name, help(name), family);
        }
        for (name, _, family) in self.seconds {
            registry.register(name, help(name), family);
        }
        for (name, _, family) in self.gauges {
            registry.register(name, help(name), family);
        }
        registry.register("restarts", help("restarts"), self.restarts);
        for (name, _, family) in self.checkpoint {
            registry.register(name, help(name), family);
        }
        registry.register("state_bytes", help("state_bytes"), self.state_bytes);
    }
}

fn help(name: &str) -> &'static str {
    match name {
        "records_in" => "Records a subtask received.",
        "records_out" => "Records a subtask sent (polled, or returned by process).",
        "batches_in" => "Batches a subtask received.",
        "batches_out" => "Batches a subtask sent.",
        "guest_traps" => "Traps of a subtask's guest.",
        "backpressure_seconds" => "Time a subtask waited for credit downstream.",
        "busy_seconds" => "Time a subtask's guest spent on records.",
        "checkpoint_sync_seconds" => {
            "Time a subtask spent on checkpoints on its own path (snapshot and merge)."
        }
        "watermark_milliseconds" => {
            "A subtask's event-time watermark, in the records' milliseconds."
        }
        "watermark_lag_seconds" => "How far a subtask's watermark is behind the wall clock.",
        "timers_pending" => "Timers a subtask keeps pending, of both clocks.",
        "restarts" => "Restarts of a job after failures.",
        "last_checkpoint_duration_seconds" => "The latest checkpoint, trigger to published.",
        "last_checkpoint_alignment_seconds" => "The latest checkpoint's longest alignment.",
        "last_checkpoint_bytes" => "Bytes of the latest checkpoint's state files.",
        "last_checkpoint_id" => "The latest completed checkpoint's number.",
        _ => "Bytes of an operator's state in the latest checkpoint.",
    }
}

/// Registers the host's build and how many of `jobs` are in each state.
fn register_host(registry: &mut Registry, jobs: &[JobRow]) {
    let version = vec![("version", env!("CARGO_PKG_VERSION"))];
    registry.register("build", "The host's build.", Info::new(version));
    let by_state = Family::<StateLabels, Gauge>::default();
    for phase in Phase::ALL {
        let count = jobs.iter().filter(|job| job.phase == phase).count();
        let labels = StateLabels {
            state: phase.name(),
        };
        by_state.get_or_create(&labels).set(count as i64);
    }
    registry.register("jobs", "Jobs of the state folder by state.", by_state);
}

/// The text of `/metrics`: the host's build, `jobs` by state, and `samples`, one per running
/// job.
pub fn encode(jobs: &[JobRow], samples: &[Sample]) -> String {
    let families = Families::new();
    samples.iter().for_each(|s| families.add(s));
    let mut registry = Registry::with_prefix("jobhost");
    register_host(&mut registry, jobs);
    families.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}
