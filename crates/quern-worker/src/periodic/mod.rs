//! Periodic (cron) jobs without a leader: every worker ticks, and Redis decides each fire.
//!
//! A schedule is declared on the [`Registry`](crate::Registry) with
//! [`Registry::periodic`](crate::Registry::periodic). For each due time T, every worker that
//! declares the schedule calls `fire.lua`, which compares T with the schedule's last decided due
//! time and, only when T is later, enqueues the run with the id `cron:<name>:<T ms>` and records
//! T, in one atomic script: two workers, or one restarted midway, write one job per due time.
//! `docs/periodic-and-unique.md` has the whole story: keys, policies, guarantees and limits.
//!
//! # Layout
//! - `schedule` — [`Periodic`]: when a schedule is due (cron with seconds in a time zone, or an
//!   interval), its policies, and refusing bad expressions with the field at fault.
//! - `ticker` — the worker's ticker task: registers the schedules at start (removing the ones
//!   no longer declared), then fires each due time.

use std::sync::Arc;

use quern_core::envelope::{NewEnvelope, encode_new};
use quern_core::{Headers, JobId};

mod schedule;
pub(crate) mod ticker;

pub use schedule::{MissedRuns, Overlap, Periodic, PeriodicError};

/// Adds `schedule` with `job` as its payload to `declared`.
pub(crate) fn declare<J: quern_core::Job>(
    declared: &mut Vec<Arc<Declared>>,
    schedule: Periodic,
    job: &J,
) -> Result<(), PeriodicError> {
    if declared.iter().any(|d| d.periodic.name == schedule.name) {
        return Err(PeriodicError::Duplicate { name: schedule.name });
    }
    let payload = serde_json::value::to_raw_value(job).map_err(|e| PeriodicError::Payload {
        name: schedule.name.clone(),
        reason: e.to_string(),
    })?;
    let options = J::options();
    declared.push(Arc::new(Declared {
        periodic: schedule,
        job: J::NAME,
        queue: options.queue.to_string(),
        payload: payload.into(),
        max_attempts: None,
    }));
    Ok(())
}

/// A schedule with what its runs carry, as the registry keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub periodic: Periodic,
    /// The job type's name.
    pub job: &'static str,
    pub queue: String,
    /// The payload JSON, encoded once when the schedule is declared.
    pub payload: Arc<serde_json::value::RawValue>,
    pub max_attempts: Option<u32>,
}

impl Declared {
    /// The id of the run due at `due_ms`.
    pub fn run_id(&self, due_ms: u64) -> String {
        format!("cron:{}:{due_ms}", self.periodic.name)
    }

    /// The envelope of a run with id `id`.
    pub fn envelope(&self, id: &str) -> String {
        let id = JobId::from(id);
        let headers = Headers::default();
        let new = NewEnvelope::new(&id, self.job, &headers).max_attempts(self.max_attempts);
        encode_new(&new, &*self.payload, usize::MAX).expect("a payload that encoded once encodes again")
    }

    /// What Redis keeps as its description: what `cron list` shows and `cron run` enqueues,
    /// from any binary.
    pub fn description(&self) -> String {
        serde_json::to_string(&Description {
            schedule: self.periodic.describe(),
            zone: self.periodic.zone_name().to_owned(),
            job: self.job.to_owned(),
            payload: (*self.payload).to_owned(),
        })
        .expect("a description serializes")
    }
}

/// A schedule's description as stored in its queue's periodic hash.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Description {
    /// The cron expression, or `every <n>ms`.
    pub schedule: String,
    /// IANA time zone.
    pub zone: String,
    /// The job type's name.
    pub job: String,
    /// The payload of its runs.
    pub payload: Box<serde_json::value::RawValue>,
}

impl Description {
    /// The schedule it describes, to compute due times from (`None` when it no longer parses).
    pub fn periodic(&self, name: &str) -> Option<Periodic> {
        let p = match self
            .schedule
            .strip_prefix("every ")
            .and_then(|s| s.strip_suffix("ms"))
        {
            Some(ms) => Periodic::every(name, std::time::Duration::from_millis(ms.parse().ok()?)),
            None => Periodic::cron(name, &self.schedule),
        };
        p.ok()?.time_zone(&self.zone).ok()
    }
}
