//! Names of systems and workloads, the sizes of each workload, and the result records.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A queue system under test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SystemName {
    /// Quern itself.
    Quern,
    /// Quern with one empty middleware layer around every execution: what middleware costs.
    QuernLayer,
    /// Quern with jobs that keep their result (`{"n":i}`, kept 1 h): what results cost. Its
    /// `redis_memory` is the bytes one retained result takes.
    QuernResult,
    /// Quern with a unique key on every job (`Unique::new("bench:<i>")`): what uniqueness costs.
    QuernUnique,
    /// Raw redis-rs on Redis Streams: the physical limit of one Redis.
    RedisLimit,
    /// apalis 1.0 + apalis-redis 1.0.
    ApalisRedis,
    /// bullmq-official 1.4 (Rust port of BullMQ).
    BullmqOfficial,
    /// chasquimq 1.3 (needs Redis >= 8.6).
    Chasquimq,
}

impl SystemName {
    /// The name used in tables, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemName::Quern => "quern",
            SystemName::QuernLayer => "quern-layer",
            SystemName::QuernResult => "quern-result",
            SystemName::QuernUnique => "quern-unique",
            SystemName::RedisLimit => "redis-limit",
            SystemName::ApalisRedis => "apalis-redis",
            SystemName::BullmqOfficial => "bullmq-official",
            SystemName::Chasquimq => "chasquimq",
        }
    }
}

impl fmt::Display for SystemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A benchmark workload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Workload {
    /// One job per round trip, awaited: jobs/s and latency.
    EnqueueSingle,
    /// Many jobs through the system's bulk API: jobs/s.
    EnqueueBulk,
    /// Drain a pre-enqueued backlog with a no-op handler: jobs/s, CPU, RSS.
    Process,
    /// Enqueue-to-handler latency for an idle worker.
    PickupLatency,
    /// Redis memory per pending job.
    RedisMemory,
    /// Producers and consumers at once for a fixed time: jobs/s.
    Sustained,
    /// Per-execution cost of an isolated PostgreSQL pool (Quern only).
    IsolatedPg,
}

impl Workload {
    /// All workloads, in table order.
    pub const ALL: [Workload; 7] = [
        Workload::EnqueueSingle,
        Workload::EnqueueBulk,
        Workload::Process,
        Workload::PickupLatency,
        Workload::RedisMemory,
        Workload::Sustained,
        Workload::IsolatedPg,
    ];

    /// The name used in tables, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::EnqueueSingle => "enqueue_single",
            Workload::EnqueueBulk => "enqueue_bulk",
            Workload::Process => "process",
            Workload::PickupLatency => "pickup_latency",
            Workload::RedisMemory => "redis_memory",
            Workload::Sustained => "sustained",
            Workload::IsolatedPg => "isolated_pg",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes of the workloads; `--quick` shrinks them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sizes {
    /// Jobs enqueued one at a time.
    pub enqueue_single: usize,
    /// Jobs enqueued through the bulk API.
    pub enqueue_bulk: usize,
    /// Jobs pre-enqueued and then processed.
    pub process: usize,
    /// Handler concurrency for `process` and `sustained`.
    pub concurrency: usize,
    /// Sequential jobs in `pickup_latency`.
    pub pickup: usize,
    /// Pending jobs for `redis_memory`.
    pub memory: usize,
    /// Length of `sustained`, in seconds.
    pub sustained_secs: u64,
}

impl Sizes {
    /// Sizes for the full or the quick run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                enqueue_single: 5_000,
                enqueue_bulk: 20_000,
                process: 20_000,
                concurrency: 256,
                pickup: 100,
                memory: 20_000,
                sustained_secs: 5,
            }
        } else {
            Sizes {
                enqueue_single: 20_000,
                enqueue_bulk: 100_000,
                process: 100_000,
                concurrency: 256,
                pickup: 500,
                memory: 100_000,
                sustained_secs: 30,
            }
        }
    }

    /// A generous bound on one child run of `workload`: past it the run is killed and reported as an error.
    pub fn bound(&self, workload: Workload) -> Duration {
        match workload {
            Workload::Sustained => Duration::from_secs(self.sustained_secs + 120),
            Workload::PickupLatency => Duration::from_secs(120 + self.pickup as u64 / 5),
            _ => Duration::from_secs(300),
        }
    }
}

/// One figure measured by one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured (`jobs_per_s`, `p50_ms`, ...).
    pub metric: String,
    /// Its unit.
    pub unit: String,
    /// The value.
    pub value: f64,
    /// Anything a reader must know about this figure.
    #[serde(default)]
    pub note: String,
}

impl Measurement {
    /// A measurement without a note.
    pub fn new(metric: &str, unit: &str, value: f64) -> Self {
        Measurement {
            metric: metric.into(),
            unit: unit.into(),
            value,
            note: String::new(),
        }
    }

    /// The same measurement with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// What a child process reports back to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChildReport {
    /// The run finished and measured these figures.
    Ok(Vec<Measurement>),
    /// The system does not run this workload here (reason).
    Skipped(String),
    /// The run failed (message).
    Error(String),
}

/// One row of the output: one figure aggregated over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `quern`, `redis-limit`, `apalis-redis`, `bullmq-official` or `chasquimq`.
    pub system: String,
    /// The workload name.
    pub workload: String,
    /// The metric name (`error` or `skipped` when nothing was measured).
    pub metric: String,
    /// The metric's unit.
    pub unit: String,
    /// Median over the runs (None when nothing was measured).
    pub median: Option<f64>,
    /// Smallest value over the runs.
    pub min: Option<f64>,
    /// Largest value over the runs.
    pub max: Option<f64>,
    /// Number of runs that produced this figure.
    pub runs: usize,
    /// Notes, errors and skip reasons.
    pub note: String,
}

/// Percentile (0..=100) of a sorted slice by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Latencies in milliseconds, sorted.
pub fn sorted_ms(latencies: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The payload every system carries: `{"n":123}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchJob {
    /// Sequence number of the job within its run.
    pub n: u64,
}
