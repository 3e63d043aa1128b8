//! `quern-bench`: side-by-side benchmarks of Quern and other Redis-backed job queues.
//!
//! ```text
//! cargo run -p quern-bench --release -- [--out FILE] [--systems a,b] [--workloads x,y] [--quick] [--runs N] [--redis-url URL]
//! ```
//!
//! Each figure is measured `--runs` times (systems round-robin per repetition, each measurement in
//! its own child process) and printed as the median with min-max. Keys of every run carry a unique
//! prefix and are deleted afterwards (SCAN + UNLINK); nothing else in Redis is touched.

mod model;
mod runner;
mod systems;
mod util;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use model::{Row, Sizes, SystemName, Workload};
use systems::Env;

/// Side-by-side benchmarks of Quern and other Redis-backed job queues.
#[derive(Debug, Parser)]
#[command(name = "quern-bench", version)]
struct Cli {
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Systems to run (default: every peer; `quern` once its adapter exists).
    #[arg(long, value_delimiter = ',', value_enum)]
    systems: Option<Vec<SystemName>>,
    /// Workloads to run (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    workloads: Option<Vec<Workload>>,
    /// Smaller workloads (5 s sustained, 5,000 single enqueues, ...).
    #[arg(long)]
    quick: bool,
    /// Repetitions of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Redis server to benchmark against.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Internal: run one measurement in this (child) process.
    #[arg(long, num_args = 2, value_names = ["SYSTEM", "WORKLOAD"], hide = true)]
    child: Option<Vec<String>>,
    /// Internal: the child run's unique key tag.
    #[arg(long, hide = true)]
    tag: Option<String>,
    /// Internal: where the child writes its report.
    #[arg(long, hide = true)]
    child_out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(child) = &cli.child {
        return child_main(&cli, child);
    }
    let systems = cli.systems.clone().unwrap_or_else(|| {
        vec![
            SystemName::Quern,
            SystemName::RedisLimit,
            SystemName::ApalisRedis,
            SystemName::BullmqOfficial,
            SystemName::Chasquimq,
        ]
    });
    let workloads = cli.workloads.clone().unwrap_or_else(|| Workload::ALL.to_vec());
    let plan = runner::Plan {
        systems,
        workloads,
        runs: cli.runs.max(1),
        quick: cli.quick,
        redis_url: cli.redis_url.clone(),
    };
    eprintln!(
        "quern-bench: {} runs, {} mode, redis {}",
        plan.runs,
        if plan.quick { "quick" } else { "full" },
        util::redact(&plan.redis_url)
    );
    let rows = runner::run_parent(&plan)?;
    let table = markdown(&rows);
    std::io::stdout().write_all(table.as_bytes())?;
    if let Some(path) = &cli.out {
        let json = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The child: one (system, workload) measurement, report written to `--child-out`.
fn child_main(cli: &Cli, child: &[String]) -> Result<()> {
    use clap::ValueEnum;
    let system = SystemName::from_str(&child[0], false).map_err(|e| anyhow::anyhow!("bad system: {e}"))?;
    let workload = Workload::from_str(&child[1], false).map_err(|e| anyhow::anyhow!("bad workload: {e}"))?;
    let env = Env {
        redis_url: cli.redis_url.clone(),
        tag: cli.tag.clone().context("--tag is required with --child")?,
        sizes: Sizes::new(cli.quick),
    };
    let out = cli
        .child_out
        .clone()
        .context("--child-out is required with --child")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(runner::run_child(system, workload, &env));
    std::fs::write(&out, serde_json::to_string(&report)?)?;
    // Peers may leave background tasks behind; the report is written, so leave now.
    std::process::exit(0);
}

/// Formats a figure for the table.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The markdown table; the ratio column is filled only where a quern row exists.
fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | workload | metric | median | min–max | runs | ratio quern/peer | note |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let quern = rows
            .iter()
            .find(|q| q.system == "quern" && q.workload == r.workload && q.metric == r.metric)
            .and_then(|q| q.median);
        let ratio = match (quern, r.median) {
            (Some(q), Some(p)) if r.system != "quern" && p != 0.0 => format!("{:.2}", q / p),
            _ => String::new(),
        };
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        let median = r
            .median
            .map(|m| format!("{}{unit}", fmt_num(m)))
            .unwrap_or_else(|| "-".into());
        let range = match (r.min, r.max) {
            (Some(a), Some(b)) => format!("{}–{}", fmt_num(a), fmt_num(b)),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.system,
            r.workload,
            r.metric,
            median,
            range,
            r.runs,
            ratio,
            r.note.replace('|', "/")
        ));
    }
    s
}
