//! The command line of a worker binary: `run`, `stats`, `enqueue`, `queue pause|resume`,
//! `dead …` and `job show|cancel`.
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

//!
//! # Layout
//! One file per command group: `run`, `stats`, `enqueue`, `queue`, `dead`, `job`; `format` prints
//! records and times. The commands call the typed admin API (`quern_redis::Inspector`); nothing
//! here decides anything about a job.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use quern_core::ErrorChain;
use quern_redis::storage::{DEFAULT_PREFIX, DEFAULT_URL, ENV_PREFIX, ENV_REDIS_URL};
use quern_redis::{Inspector, RedisConfig, Storage, StorageError};

use crate::{Registry, Worker};

/// `println!` for command output that ends quietly when stdout is a closed pipe
/// (`quern job show <id> | head -1`), instead of panicking on `Broken pipe`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // The reader has what it wanted: stop, as Unix tools do on SIGPIPE.
                std::process::exit(0);
            }
            panic!("writing the command's output failed: {e}");
        }
    }};
}

mod cron;
mod dead;
mod enqueue;
mod format;
mod job;
mod logging;
mod queue;
mod run;
mod stats;

pub use format::format_ms;
pub use logging::{ENV_LOG_FORMAT, LogFormat, init_logging};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "Quern: Redis-backed background jobs", long_about = None)]
pub struct Cli {
    /// Redis URL, e.g. redis://:password@host:6379/0.
    /// (The same variables and defaults as `RedisConfig::from_env`.)
    #[arg(long, env = ENV_REDIS_URL, default_value = DEFAULT_URL, global = true)]
    pub redis_url: String,
    /// Prefix of every Redis key Quern writes.
    #[arg(long, env = ENV_PREFIX, default_value = DEFAULT_PREFIX, global = true)]
    pub prefix: String,
    /// Log format on stderr: `text`, or `json` (one object per line, for log shippers).
    #[arg(long, env = ENV_LOG_FORMAT, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
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
    /// Enqueue a job by name with a JSON payload. A worker binary refuses a job name it does
    /// not know and a payload that does not decode into the job's type; nothing is written then.
    Enqueue(EnqueueArgs),
    /// Pause or resume a queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Inspect and act on dead jobs.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Inspect any job.
    #[command(subcommand)]
    Job(JobCommand),
    /// List the periodic schedules, or run one now.
    #[command(subcommand)]
    Cron(CronCommand),
}

/// `cron` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum CronCommand {
    /// Every known schedule: name, queue, schedule, zone, next fire, last fire, last job id.
    List,
    /// Enqueue one run of a schedule now (id `cron:<name>:run:<ms>`), apart from its due times.
    Run {
        /// The schedule's name.
        name: String,
    },
}

/// `enqueue` options.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job's registered name.
    pub job: String,
    /// The job's fields as JSON.
    pub json: String,
    /// Queue (default: the job type's queue when registered here, else `default`).
    #[arg(long, short)]
    pub queue: Option<String>,
    /// Run after this many milliseconds.
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// The job's id (idempotent: a job with this id already known is not enqueued again).
    /// 1 to 128 bytes of A-Z a-z 0-9 - _ . :
    #[arg(long)]
    pub id: Option<String>,
    /// Executions allowed for this job (default: the job type's).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// A unique key: nothing is enqueued while a job of the queue holding it is queued,
    /// delayed, running or retrying (the holder's id is printed).
    #[arg(long)]
    pub unique: Option<String>,
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
        /// Really delete them (without it, only says how many would go).
        #[arg(long)]
        yes: bool,
    },
}

/// `job` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum JobCommand {
    /// Where a job is and what it holds: state, due time, attempts, last error, result.
    Show {
        /// Job id.
        id: String,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
    /// Cancel a job: a queued, delayed or retrying one is removed (it never runs); a running
    /// one is stopped by its worker and ends as cancelled, never retried.
    Cancel {
        /// Job id.
        id: String,
        /// Its queue (default: search all).
        #[arg(long, short)]
        queue: Option<String>,
    },
}

/// `queue` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum QueueCommand {
    /// Stop workers claiming from a queue (within a second); jobs keep arriving and wait.
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let workers claim from a paused queue again.
    Resume {
        /// The queue.
        queue: String,
    },
}

/// Parses the process's arguments, sets up logging, and runs the command. Exit codes: 0 done,
/// 1 failed, 2 bad input.
pub async fn main(registry: Registry) -> ExitCode {
    main_with(registry, |w, _| w).await
}

/// What the command line resolved, handed to [`main_with`]'s hook: a job's own connections go
/// where the worker's do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Setup {
    /// The Redis the worker uses: URL (`--redis-url`, `REDIS_URL`) and key prefix
    /// (`--prefix`, `QUERN_PREFIX`).
    pub redis: RedisConfig,
}

/// Like [`main`], with a hook to configure the worker before it runs: its app state
/// ([`Worker::extension`], read by jobs with [`JobContext::state`](quern_core::JobContext::state)),
/// middleware, settings. The hook gets the [`Setup`] the command line resolved.
///
/// ```no_run
/// # use quern_core::{Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Notify { user: u64 }
/// # impl Job for Notify { const NAME: &'static str = "notify"; type Resources = ();
/// #   async fn run(self, ctx: &JobContext, _: &mut ()) -> Result<(), JobError> {
/// #     let app: &App = ctx.state().ok_or_else(|| JobError::permanent("no App"))?;
/// #     Ok(()) } }
/// struct App { redis_url: String }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let registry = quern_worker::Registry::new().register::<Notify>();
///     quern_worker::cli::main_with(registry, |worker, setup| {
///         worker.extension(App { redis_url: setup.redis.url.clone() })
///     })
///     .await
/// }
/// ```
pub async fn main_with(registry: Registry, configure: impl FnOnce(Worker, &Setup) -> Worker) -> ExitCode {
    // Parsed first: the arguments say which log format to set up (a bad one exits 2 here).
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match execute(cli, registry, configure, crate::shutdown_signal()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ErrorChain::of(&e));
            if let StorageError::Payload(_)
            | StorageError::QueueName(_)
            | StorageError::JobId(_)
            | StorageError::Options(_) = e
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to stderr in the format `QUERN_LOG_FORMAT` names (default text, coloured only on a
/// terminal); `RUST_LOG` filters (default `info`). For binaries that do not parse [`Cli`].
pub fn init_tracing() {
    match logging::log_format_from_env() {
        Ok(format) => init_logging(format.unwrap_or_default()),
        Err(message) => {
            init_logging(LogFormat::Text);
            tracing::warn!("{message}; logging as text");
        }
    }
}

/// Runs a parsed command; `shutdown` stops `run`.
pub async fn execute(
    cli: Cli,
    registry: Registry,
    configure: impl FnOnce(Worker, &Setup) -> Worker,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<ExitCode, StorageError> {
    let setup = Setup {
        redis: RedisConfig::new(cli.redis_url).prefix(cli.prefix),
    };
    let storage = Storage::connect(setup.redis.clone()).await?;
    match cli.command {
        Command::Run(args) => {
            let configure = |worker| configure(worker, &setup);
            run::run(storage, registry, args, configure, shutdown).await
        }
        Command::Stats { queues, json } => stats::stats(&Inspector::new(storage), queues, json).await,
        Command::Enqueue(args) => enqueue::enqueue(storage, &registry, args).await,
        Command::Queue(cmd) => queue::queue(&Inspector::new(storage), cmd).await,
        Command::Dead(cmd) => dead::dead(&Inspector::new(storage), cmd).await,
        Command::Job(JobCommand::Show { id, queue }) => job::show(&Inspector::new(storage), id, queue).await,
        Command::Job(JobCommand::Cancel { id, queue }) => {
            job::cancel(&Inspector::new(storage), id, queue).await
        }
        Command::Cron(cmd) => cron::cron(&Inspector::new(storage), cmd).await,
    }
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
