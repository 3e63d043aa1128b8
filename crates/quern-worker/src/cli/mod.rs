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

//!
//! # Layout
//! One file per command group: `run`, `stats`, `enqueue`, `dead`, `job`; `format` prints
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

mod dead;
mod enqueue;
mod format;
mod job;
mod logging;
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
        /// Really delete them (without it, only says how many would go).
        #[arg(long)]
        yes: bool,
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
    // Parsed first: the arguments say which log format to set up (a bad one exits 2 here).
    let cli = Cli::parse();
    init_logging(cli.log_format);
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
    configure: impl FnOnce(Worker) -> Worker,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<ExitCode, StorageError> {
    let storage = Storage::connect(RedisConfig::new(cli.redis_url).prefix(cli.prefix)).await?;
    match cli.command {
        Command::Run(args) => run::run(storage, registry, args, configure, shutdown).await,
        Command::Stats { queues, json } => stats::stats(&Inspector::new(storage), queues, json).await,
        Command::Enqueue {
            job,
            json,
            queue,
            delay_ms,
        } => enqueue::enqueue(storage, &registry, job, json, queue, delay_ms).await,
        Command::Dead(cmd) => dead::dead(&Inspector::new(storage), cmd).await,
        Command::Job(JobCommand::Show { id, queue }) => job::show(&Inspector::new(storage), id, queue).await,
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
