//! A worker binary that declares one periodic schedule, `beat`, due every second, whose runs go
//! to queue `beats` (which this worker does not work: the runs stay there to be counted). Used by
//! `tests/periodic_chaos.rs`, which SIGKILLs and restarts three of these.
//!
//! ```text
//! cargo run --example periodic_worker -- run --queue periodic-idle
//! cargo run --example periodic_worker -- cron list
//! ```

use std::time::Duration;

use quern::{Job, JobContext, JobError, JobOptions, Periodic, Registry};
use serde::{Deserialize, Serialize};

/// The periodic job: run elsewhere (or never, in the test).
#[derive(Serialize, Deserialize)]
struct Beat;

impl Job for Beat {
    const NAME: &'static str = "beat";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("beats")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

/// Gives the worker a queue to work, so that it starts.
#[derive(Serialize, Deserialize)]
struct Idle;

impl Job for Idle {
    const NAME: &'static str = "idle";
    type Resources = ();
    fn options() -> JobOptions {
        JobOptions::new().queue("periodic-idle")
    }
    async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let schedule = Periodic::every("beat", Duration::from_secs(1)).expect("a valid interval");
    let registry = Registry::new()
        .register::<Idle>()
        .periodic(schedule, Beat)
        .expect("one schedule named beat");
    quern::cli::main(registry).await
}
