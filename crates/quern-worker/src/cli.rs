//! The command line of a worker binary: `run`, `stats`, `enqueue`, `dead …` and `job show`.
//!
//! A user's worker binary registers its job types and hands over:
//!
//! ```no_run
//! # use quern_core::{Job, JobContext, JobError};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct SendEmail { to: String }
//! # impl Job for SendEmail { const NAME: &'static str = "send_email"; type Resources = ();
//! #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     quern_worker::cli::main(quern_worker::Registry::new().register::<SendEmail>()).await
//! }
//! ```

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use quern_core::ErrorChain;
use quern_redis::inspector::{Inspector, RetryDead, StoredRecord};
use quern_redis::{DeadRecord, Producer, RedisConfig, Storage, StorageError};

use crate::{Registry, Worker, WorkerConfig};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "Quern: Redis-backed background jobs", long_about = None)]
pub struct Cli {
    /// Redis URL, e.g. redis://:password@host:6379/0.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// Prefix of every Redis key Quern writes.
    #[arg(long, env = "QUERN_PREFIX", default_value = "quern", global = true)]
    pub prefix: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run a worker until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Counts per queue: pending, running, scheduled, retrying, dead.
    Stats {
        /// Only these queues (default: all known).
        #[arg(long = "queue", short)]
        queues: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a job by name with a JSON payload. Invalid JSON is refused and nothing is written.
    Enqueue {
        /// The job's registered name.
        job: String,
        /// The job's fields as JSON.
        json: String,
        /// Queue (default: the job type's queue when registered here, else `default`).
        #[arg(long, short)]
        queue: Option<String>,
        /// Run after this many milliseconds.
        #[arg(long)]
        delay_ms: Option<u64>,
    },
    /// Inspect and act on dead jobs.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Inspect any job.
    #[command(subcommand)]
    Job(JobCommand),
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Queues to work (repeatable; default: the queues of the registered job types).
    #[arg(long = "queue", short)]
    pub queues: Vec<String>,
    /// Most jobs running at once.
    #[arg(long, env = "QUERN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Lease duration in seconds: a killed worker's jobs run elsewhere after this long.
    #[arg(long, env = "QUERN_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Seconds running jobs get to finish at shutdown before they go back to their queue.
    #[arg(long, env = "QUERN_GRACE_SECS", default_value_t = 30)]
    pub grace_secs: u64,
}

/// `dead` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum DeadCommand {
    /// List dead jobs, newest first.
    List {
        /// Only this queue (default: all).
        #[arg(long, short)]
        queue: Option<String>,
        /// At most this many per queue.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Everything kept about a dead job: diagnostics, error chain, the job itself.
    Show {
        /// Job id.
        id: String,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
    /// Put dead jobs back in their queue with a fresh set of attempts.
    Retry {
        /// Job id (or --all).
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every dead job (of --queue, or of all queues).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
    /// Delete one dead job.
    Delete {
        /// Job id.
        id: String,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
    /// Delete every dead job (of --queue, or of all queues).
    Purge {
        /// Only this queue.
        #[arg(long, short)]
        queue: Option<String>,
    },
}

/// `job` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum JobCommand {
    /// Where a job is and what it holds.
    Show {
        /// Job id.
        id: String,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
}

/// Parses the process's arguments, sets up logging, and runs the command. Exit codes: 0 done,
/// 1 failed, 2 bad input.
pub async fn main(registry: Registry) -> ExitCode {
    main_with(registry, |w| w).await
}

/// Like [`main`], with a hook to configure the worker (extensions such as a database config).
pub async fn main_with(registry: Registry, configure: impl FnOnce(Worker) -> Worker) -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match execute(cli, registry, configure, crate::shutdown_signal()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ErrorChain::of(&e));
            if let StorageError::Payload(_) | StorageError::QueueName(_) = e {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command; `shutdown` stops `run`.
pub async fn execute(
    cli: Cli,
    registry: Registry,
    configure: impl FnOnce(Worker) -> Worker,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<ExitCode, StorageError> {
    let storage = Storage::connect(RedisConfig::new(cli.redis_url).prefix(cli.prefix)).await?;
    match cli.command {
        Command::Run(args) => {
            if registry.names().is_empty() {
                eprintln!(
                    "warning: this binary registers no job types: every job it claims is dead-lettered as unknown"
                );
            }
            let config = WorkerConfig {
                queues: args.queues,
                concurrency: args.concurrency,
                lease: Duration::from_secs(args.lease_secs.max(1)),
                grace: Duration::from_secs(args.grace_secs),
                ..WorkerConfig::default()
            };
            let worker = configure(Worker::new(storage, registry).config(config));
            match worker.run(shutdown).await {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(crate::WorkerError::Storage(e)) => Err(e),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Stats { queues, json } => {
            let queues = if queues.is_empty() {
                storage.queues().await?
            } else {
                queues
            };
            let mut all = Vec::new();
            for q in &queues {
                all.push(storage.stats(&storage.keys(q)).await?);
            }
            let server = Inspector::new(storage.clone()).server_health().await;
            if json {
                let out = serde_json::json!({ "queues": all, "server": server });
                println!("{}", serde_json::to_string_pretty(&out).expect("stats serialize"));
            } else {
                println!(
                    "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}",
                    "queue", "pending", "running", "scheduled", "retrying", "dead", "completed", "failed"
                );
                for s in &all {
                    println!(
                        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}",
                        s.queue, s.pending, s.running, s.scheduled, s.retrying, s.dead, s.completed, s.failed
                    );
                }
                if all.is_empty() {
                    println!("(no queues yet)");
                }
                println!("{}", server.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue {
            job,
            json,
            queue,
            delay_ms,
        } => {
            let queue = queue
                .or_else(|| registry.options(&job).map(|o| o.queue.to_string()))
                .unwrap_or_else(|| "default".into());
            let at = delay_ms.map(|ms| SystemTime::now() + Duration::from_millis(ms));
            let producer = Producer::new(storage);
            match producer.enqueue_json(&queue, &job, &json, at).await {
                Ok(id) => {
                    println!("{id}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(StorageError::Payload(e)) => {
                    eprintln!("error: invalid JSON payload, nothing was enqueued: {e}");
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e),
            }
        }
        Command::Dead(cmd) => dead(&Inspector::new(storage), cmd).await,
        Command::Job(JobCommand::Show { id, queue }) => {
            let inspector = Inspector::new(storage);
            match inspector.find_job(&id, queue.as_deref()).await? {
                Some(job) => {
                    println!("id:     {}\nqueue:  {}\nstate:  {}", job.id, job.queue, job.state);
                    if let Some(due) = job.due_ms {
                        println!("due:    {}", format_ms(due));
                    }
                    if let Some(lease) = &job.lease {
                        println!(
                            "worker: {} (lease renewed {} ms ago)",
                            lease.worker, lease.idle_ms
                        );
                    }
                    match (&job.dead, &job.envelope) {
                        (Some(record), _) => print_record(record),
                        (None, Some(env)) => println!("job:    {env}"),
                        (None, None) => {}
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no job with id {id:?} (completed jobs are not kept)");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn dead(inspector: &Inspector, cmd: DeadCommand) -> Result<ExitCode, StorageError> {
    let queues = |queue: Option<String>| async move {
        match queue {
            Some(q) => Ok(vec![q]),
            None => inspector.queues().await,
        }
    };
    match cmd {
        DeadCommand::List { queue, limit } => {
            println!(
                "{:<38} {:<20} {:<16} {:<24} {:<20} message",
                "id", "job", "queue", "died at", "reason"
            );
            for q in queues(queue).await? {
                for d in inspector.dead_jobs(&q, limit).await? {
                    let (job, died, reason, message) = match &d.record {
                        StoredRecord::Parsed(r) => (
                            r.job.clone().unwrap_or_default(),
                            format_ms(r.died_at),
                            r.reason.describe().to_owned(),
                            r.message.clone(),
                        ),
                        StoredRecord::Unparsed(text) => {
                            (String::new(), String::new(), String::new(), text.clone())
                        }
                        _ => Default::default(),
                    };
                    let message: String = message.chars().take(100).collect();
                    println!("{:<38} {job:<20} {q:<16} {died:<24} {reason:<20} {message}", d.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Show { id, queue } => match inspector.dead_job(&id, queue.as_deref()).await? {
            Some(d) => {
                println!("id:       {id}\nqueue:    {}", d.queue);
                match &d.record {
                    StoredRecord::Parsed(r) => print_record(r),
                    StoredRecord::Unparsed(text) => println!("record: {text}"),
                    _ => {}
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
        },
        DeadCommand::Retry {
            id: Some(id), queue, ..
        } => match inspector.retry_dead(&id, queue.as_deref()).await? {
            RetryDead::Queued { queue } => {
                println!("{id} is back in queue {queue}");
                Ok(ExitCode::SUCCESS)
            }
            RetryDead::NotDead => {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
            RetryDead::NotRetryable { why } => {
                eprintln!("cannot retry {id}: {why}; see `dead show {id}`");
                Ok(ExitCode::FAILURE)
            }
            _ => Ok(ExitCode::FAILURE),
        },
        DeadCommand::Retry { id: None, queue, .. } => {
            let (mut revived, mut refused) = (0, 0);
            for q in queues(queue).await? {
                let r = inspector.retry_all_dead(&q).await?;
                revived += r.revived;
                refused += r.refused;
            }
            println!("{revived} job(s) back in their queues; {refused} refused");
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DeadCommand::Delete { id, queue } => {
            if inspector.delete_dead(&id, queue.as_deref()).await? {
                println!("deleted {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no dead job with id {id:?}");
                Ok(ExitCode::FAILURE)
            }
        }
        DeadCommand::Purge { queue } => {
            let total = inspector.purge_dead(queue.as_deref()).await?;
            println!("purged {total} dead job(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_record(r: &DeadRecord) {
    println!("job:      {}", r.job.as_deref().unwrap_or("(unknown)"));
    println!("reason:   {}", r.reason.describe());
    println!("died at:  {}", format_ms(r.died_at));
    println!("attempt:  {}", r.attempt);
    println!("message:  {}", r.message);
    if let Some(d) = &r.decode {
        println!("decode:   {:?} error: {}", d.kind, d.message);
        if let Some(p) = &d.path {
            println!("  path:   {p}");
        }
        println!(
            "  at:     line {} column {} (byte {} of {})",
            d.line, d.column, d.offset, d.size
        );
        println!("  around: {}", d.window);
    }
    if !r.failures.is_empty() {
        println!("failures:");
        for f in &r.failures {
            println!("  attempt {} at {} ({}):", f.attempt, format_ms(f.at), f.kind);
            for (i, m) in f.chain.iter().enumerate() {
                println!("    {}{m}", if i == 0 { "" } else { "caused by: " });
            }
        }
    }
    match (&r.envelope, &r.raw_hex) {
        (Some(e), _) => println!("stored:   {e}"),
        (None, Some(h)) => println!("stored (hex, not UTF-8): {h}"),
        _ => {}
    }
}

/// `2026-11-25T14:34:28.123Z` from ms since the Unix epoch.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

pub use crate::worker::shutdown_from;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_millis() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_764_081_268_123), "2025-11-25T14:34:28.123Z");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
