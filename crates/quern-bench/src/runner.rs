//! Runs one (system, workload) measurement in a child process, and drives the children from the parent.
//!
//! Every measurement runs in its own child process (`quern-bench --child SYSTEM WORKLOAD`), so CPU
//! time (getrusage) and peak RSS belong to that system alone, and a system that crashes or hangs
//! costs one error row, not the whole run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::model::{
    ChildReport, Measurement, Row, Sizes, SystemName, Workload, median, percentile, sorted_ms,
};
use crate::systems::apalis::{Apalis, PROCESS_CAP};
use crate::systems::bullmq::BullMq;
use crate::systems::chasquimq::Chasquimq;
use crate::systems::redis_limit::RedisLimit;
use crate::systems::{Env, System};
use crate::util;

/// Why only Quern has `isolated_pg` figures.
pub const ISOLATED_PG_QUERN_ONLY: &str = "Quern's own feature: the peers have no per-execution pool";

/// In the child: measures `workload` on `system` and returns the report.
pub async fn run_child(system: SystemName, workload: Workload, env: &Env) -> ChildReport {
    match system {
        SystemName::RedisLimit => measure::<RedisLimit>(workload, env).await,
        SystemName::ApalisRedis => measure::<Apalis>(workload, env).await,
        SystemName::BullmqOfficial => measure::<BullMq>(workload, env).await,
        SystemName::Chasquimq => measure::<Chasquimq>(workload, env).await,
        SystemName::Quern => measure::<crate::systems::quern::Quern>(workload, env).await,
        SystemName::QuernLayer => measure::<crate::systems::quern::Quern<1>>(workload, env).await,
        SystemName::QuernResult => measure::<crate::systems::quern::Quern<2>>(workload, env).await,
        SystemName::QuernUnique => measure::<crate::systems::quern::Quern<3>>(workload, env).await,
    }
}

async fn measure<S: System>(workload: Workload, env: &Env) -> ChildReport {
    if workload == Workload::IsolatedPg {
        if S::NAME != SystemName::Quern {
            return ChildReport::Skipped(ISOLATED_PG_QUERN_ONLY.into());
        }
        return match crate::systems::isolated_pg::measure(env).await {
            Ok(ms) => ChildReport::Ok(ms),
            Err(e) => ChildReport::Error(format!("{e:#}")),
        };
    }
    if let Some(reason) = S::unsupported(env, workload).await {
        return ChildReport::Skipped(reason);
    }
    let mut sys = match tokio::time::timeout(Duration::from_secs(30), S::connect(env)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ChildReport::Error(format!("connect: {e:#}")),
        Err(_) => return ChildReport::Error("connect: timed out after 30 s".into()),
    };
    let result = measure_workload(&mut sys, workload, env).await;
    let cleanup = tokio::time::timeout(Duration::from_secs(60), sys.cleanup()).await;
    match (result, cleanup) {
        (Ok(mut ms), cleaned) => {
            let note = S::note(workload);
            // The system's configuration note goes on the workload's first figure only.
            if let Some(first) = ms.first_mut() {
                first.note = join_notes(&[&note, &first.note]);
            }
            if !matches!(cleaned, Ok(Ok(()))) {
                eprintln!("warning: {} cleanup failed: {cleaned:?}", S::NAME);
            }
            ChildReport::Ok(ms)
        }
        (Err(e), _) => ChildReport::Error(format!("{e:#}")),
    }
}

fn join_notes(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("; ")
}

async fn measure_workload<S: System>(sys: &mut S, workload: Workload, env: &Env) -> Result<Vec<Measurement>> {
    let sizes = env.sizes;
    let bound = sizes.bound(workload).saturating_sub(Duration::from_secs(30));
    let per_s = |n: f64, d: Duration| n / d.as_secs_f64();
    Ok(match workload {
        Workload::EnqueueSingle => {
            let n = sizes.enqueue_single;
            let t = Instant::now();
            let one_by_one = async {
                let mut lat = Vec::with_capacity(n);
                for i in 0..n as u64 {
                    let t = Instant::now();
                    sys.enqueue_one(i).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            };
            let lat = tokio::time::timeout(bound, one_by_one)
                .await
                .context("timed out")??;
            let el = t.elapsed();
            let ms = sorted_ms(&lat);
            vec![
                Measurement::new("jobs_per_s", "jobs/s", per_s(n as f64, el)).with_note(format!("{n} jobs")),
                Measurement::new("p50_ms", "ms", percentile(&ms, 50.0)),
                Measurement::new("p99_ms", "ms", percentile(&ms, 99.0)),
            ]
        }
        Workload::EnqueueBulk => {
            let n = sizes.enqueue_bulk;
            let t = Instant::now();
            tokio::time::timeout(bound, sys.enqueue_bulk(n))
                .await
                .context("timed out")??;
            vec![
                Measurement::new("jobs_per_s", "jobs/s", per_s(n as f64, t.elapsed()))
                    .with_note(format!("{n} jobs")),
            ]
        }
        Workload::Process => {
            let n = if S::NAME == SystemName::ApalisRedis {
                sizes.process.min(PROCESS_CAP)
            } else {
                sizes.process
            };
            tokio::time::timeout(bound, sys.enqueue_bulk(n))
                .await
                .context("pre-enqueue timed out")??;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let reset = util::reset_peak_rss();
            let (rss0, _) = util::rss();
            let cpu0 = util::cpu_time();
            let t = Instant::now();
            sys.process(n, sizes.concurrency, bound).await?;
            let el = t.elapsed();
            let cpu = util::cpu_time().saturating_sub(cpu0);
            let (_, peak) = util::rss();
            let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
            let rss_note = if reset {
                "peak RSS of the child during processing"
            } else {
                "peak RSS of the child since start (clear_refs refused)"
            };
            vec![
                Measurement::new("jobs_per_s", "jobs/s", per_s(n as f64, el)).with_note(format!("{n} jobs")),
                Measurement::new("cpu_us_per_job", "us/job", cpu.as_secs_f64() * 1e6 / n as f64)
                    .with_note("user+sys of the worker process (Redis not included)"),
                Measurement::new("peak_rss_mb", "MiB", mb(peak)).with_note(rss_note),
                Measurement::new("rss_growth_mb", "MiB", mb(peak.saturating_sub(rss0)))
                    .with_note("peak minus RSS before processing"),
            ]
        }
        Workload::PickupLatency => {
            let n = sizes.pickup;
            let lat = sys.pickup_latency(n, bound).await?;
            let ms = sorted_ms(&lat);
            vec![
                Measurement::new("p50_ms", "ms", percentile(&ms, 50.0))
                    .with_note(format!("{n} jobs, gaps 1-20 ms")),
                Measurement::new("p99_ms", "ms", percentile(&ms, 99.0)),
            ]
        }
        Workload::RedisMemory => {
            let n = sizes.memory;
            let mut con = util::connect(&env.redis_url).await?;
            let before = util::used_memory(&mut con).await?;
            tokio::time::timeout(bound, sys.fill_for_memory(n, sizes.concurrency, bound))
                .await
                .context("timed out")??;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = util::used_memory(&mut con).await?;
            vec![
                Measurement::new("bytes_per_job", "B/job", (after - before) as f64 / n as f64).with_note(
                    format!("{n} {}; INFO used_memory delta on a shared server", S::MEMORY_OF),
                ),
            ]
        }
        Workload::Sustained => {
            let secs = sizes.sustained_secs;
            let handled = tokio::time::timeout(bound, sys.sustained(secs, sizes.concurrency))
                .await
                .context("timed out")??;
            vec![
                Measurement::new("jobs_per_s", "jobs/s", handled as f64 / secs as f64)
                    .with_note(format!("{secs} s")),
            ]
        }
        Workload::IsolatedPg => unreachable!("handled by the caller"),
    })
}

/// Parent-side options.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Systems, in the order of the first repetition.
    pub systems: Vec<SystemName>,
    /// Workloads, in table order.
    pub workloads: Vec<Workload>,
    /// Repetitions of each figure.
    pub runs: usize,
    /// `--quick`.
    pub quick: bool,
    /// Redis URL.
    pub redis_url: String,
}

/// Runs every (workload, repetition, system) in a child process, systems round-robin per
/// repetition, and aggregates the reports into rows.
pub fn run_parent(plan: &Plan) -> Result<Vec<Row>> {
    let sizes = Sizes::new(plan.quick);
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut reports: BTreeMap<(Workload, SystemName), Vec<ChildReport>> = BTreeMap::new();
    for &workload in &plan.workloads {
        for rep in 0..plan.runs {
            let k = plan.systems.len();
            for j in 0..k {
                let system = plan.systems[(j + rep) % k];
                let report = if workload == Workload::IsolatedPg && system != SystemName::Quern {
                    ChildReport::Skipped(ISOLATED_PG_QUERN_ONLY.into())
                } else {
                    let tag = format!(
                        "{}-{}-{}-{rep}-{:08x}",
                        std::process::id(),
                        system,
                        workload,
                        rand::random::<u32>()
                    );
                    let r = spawn_child(&exe, system, workload, &tag, plan, sizes.bound(workload));
                    // Delete the run's keys again, whatever happened in the child.
                    let env = Env {
                        redis_url: plan.redis_url.clone(),
                        tag,
                        sizes,
                    };
                    if let Err(e) = rt.block_on(delete_run_keys(&env)) {
                        eprintln!("warning: cleanup of {} failed: {e:#}", env.queue());
                    }
                    r
                };
                eprintln!(
                    "[{workload} run {}/{} {system}] {}",
                    rep + 1,
                    plan.runs,
                    summary(&report)
                );
                reports.entry((workload, system)).or_default().push(report);
            }
        }
    }
    Ok(aggregate(&reports))
}

async fn delete_run_keys(env: &Env) -> Result<()> {
    let mut con = tokio::time::timeout(Duration::from_secs(10), util::connect(&env.redis_url)).await??;
    for p in env.key_patterns() {
        tokio::time::timeout(Duration::from_secs(60), util::delete_matching(&mut con, &p)).await??;
    }
    Ok(())
}

fn summary(r: &ChildReport) -> String {
    match r {
        ChildReport::Ok(ms) => ms
            .iter()
            .map(|m| format!("{}={:.3}", m.metric, m.value))
            .collect::<Vec<_>>()
            .join(" "),
        ChildReport::Skipped(s) => s.clone(),
        ChildReport::Error(e) => format!("ERROR: {e}"),
    }
}

fn spawn_child(
    exe: &PathBuf,
    system: SystemName,
    workload: Workload,
    tag: &str,
    plan: &Plan,
    bound: Duration,
) -> ChildReport {
    let out = std::env::temp_dir().join(format!("quern-bench-{tag}.json"));
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(system.as_str())
        .arg(workload.as_str())
        .arg("--tag")
        .arg(tag)
        .arg("--child-out")
        .arg(&out)
        .arg("--redis-url")
        .arg(&plan.redis_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if plan.quick {
        cmd.arg("--quick");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ChildReport::Error(format!("cannot start child: {e}")),
    };
    let deadline = Instant::now() + bound;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {bound:?} (bound exceeded)"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("wait: {e}")),
        }
    };
    let report = match status {
        Err(e) => ChildReport::Error(e),
        Ok(s) => match std::fs::read_to_string(&out) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| ChildReport::Error(format!("bad child report: {e}"))),
            Err(_) => ChildReport::Error(format!("child exited with {s} and no report")),
        },
    };
    let _ = std::fs::remove_file(&out);
    report
}

fn aggregate(reports: &BTreeMap<(Workload, SystemName), Vec<ChildReport>>) -> Vec<Row> {
    let mut rows = Vec::new();
    for ((workload, system), reps) in reports {
        // metric -> (unit, values, notes), in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut figures: BTreeMap<String, (String, Vec<f64>, Vec<String>)> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut skips = Vec::new();
        for r in reps {
            match r {
                ChildReport::Ok(ms) => {
                    for m in ms {
                        if !figures.contains_key(&m.metric) {
                            order.push(m.metric.clone());
                        }
                        let e = figures
                            .entry(m.metric.clone())
                            .or_insert_with(|| (m.unit.clone(), vec![], vec![]));
                        if m.value.is_finite() {
                            e.1.push(m.value);
                        }
                        if !m.note.is_empty() && !e.2.contains(&m.note) {
                            e.2.push(m.note.clone());
                        }
                    }
                }
                ChildReport::Error(e) => errors.push(e.clone()),
                ChildReport::Skipped(s) => {
                    if !skips.contains(s) {
                        skips.push(s.clone())
                    }
                }
            }
        }
        for metric in order {
            let (unit, values, notes) = &figures[&metric];
            let mut note = notes.join("; ");
            if !errors.is_empty() {
                note = join_notes(&[&note, &format!("{} of {} runs failed", errors.len(), reps.len())]);
            }
            rows.push(Row {
                system: system.to_string(),
                workload: workload.to_string(),
                metric,
                unit: unit.clone(),
                median: (!values.is_empty()).then(|| median(values)),
                min: values.iter().copied().reduce(f64::min),
                max: values.iter().copied().reduce(f64::max),
                runs: values.len(),
                note,
            });
        }
        if !errors.is_empty() {
            let mut uniq: Vec<&String> = Vec::new();
            for e in &errors {
                if !uniq.contains(&e) {
                    uniq.push(e);
                }
            }
            rows.push(Row {
                system: system.to_string(),
                workload: workload.to_string(),
                metric: "error".into(),
                unit: String::new(),
                median: None,
                min: None,
                max: None,
                runs: errors.len(),
                note: uniq.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | "),
            });
        }
        if !skips.is_empty() && figures.is_empty() && errors.is_empty() {
            rows.push(Row {
                system: system.to_string(),
                workload: workload.to_string(),
                metric: "skipped".into(),
                unit: String::new(),
                median: None,
                min: None,
                max: None,
                runs: 0,
                note: skips.join(" | "),
            });
        }
    }
    rows
}
