//! Periodic schedules: firing one due time once (`fire.lua`), making a queue's known schedules
//! the ones a starting worker declares (`sync_periodic.lua`), and reading their state.
//!
//! The keys live under the queue's hash tag (see [`QueueKeys::periodic`] and
//! [`QueueKeys::periodic_state`]), so a fire and its enqueue are one atomic script in one slot.

use std::collections::HashMap;

use crate::error::StorageError;
use crate::keys::{QueueKeys, queues_key};
use crate::scripts;

use super::Storage;

/// What [`Storage::fire_periodic`] did for one due time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fire {
    /// The run was enqueued, as this stream entry.
    Enqueued(String),
    /// The due time was already decided (fired or skipped by this or another worker), or it is
    /// not after the time the schedule became known.
    Passed,
    /// Skipped by the overlap policy: the previous run is still queued, running or retrying.
    Overlap,
    /// A job with the run's id already exists: the due time counts as fired.
    Exists,
}

/// The stored state of one periodic schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeriodicState {
    /// The last due time decided (fired or skipped), ms since the epoch; when nothing fired yet,
    /// the time the schedule became known.
    pub last_due_ms: Option<u64>,
    /// The id of the last run enqueued.
    pub last_id: Option<String>,
    /// When the last run was enqueued (the worker's clock), ms since the epoch.
    pub last_fired_at_ms: Option<u64>,
    /// The last due time skipped by the overlap policy.
    pub last_skipped_ms: Option<u64>,
}

impl Storage {
    /// Enqueues `envelope` (whose id is `id`) as the run of schedule `name` for due time `due_ms`,
    /// unless that due time is already decided; with `skip_overlap`, skips it while the previous
    /// run is still in the queue. One atomic script: two workers firing the same due time write
    /// one job.
    #[allow(clippy::too_many_arguments)]
    pub async fn fire_periodic(
        &self,
        keys: &QueueKeys,
        name: &str,
        due_ms: u64,
        id: &str,
        envelope: &str,
        skip_overlap: bool,
        now_ms: u64,
    ) -> Result<Fire, StorageError> {
        let (written, what): (i64, String) = scripts::FIRE
            .key(keys.periodic_state(name))
            .key(&keys.stream)
            .key(&keys.jobs)
            .key(&keys.dead_records)
            .key(keys.done(id))
            .arg(due_ms)
            .arg(id)
            .arg(envelope)
            .arg(if skip_overlap { "1" } else { "0" })
            .arg(now_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("firing a periodic schedule"))?;
        Ok(match (written, what.as_str()) {
            (1, _) => Fire::Enqueued(what),
            (_, "overlap") => Fire::Overlap,
            (_, "exists") => Fire::Exists,
            _ => Fire::Passed,
        })
    }

    /// Makes the known schedules of `keys`' queue exactly `declared` (name, description JSON):
    /// the declared ones keep their state, new ones start at `now_ms`, the others are removed
    /// with their state. Returns the names removed.
    pub async fn sync_periodic(
        &self,
        keys: &QueueKeys,
        now_ms: u64,
        declared: &[(String, String)],
    ) -> Result<Vec<String>, StorageError> {
        if !declared.is_empty() {
            redis::cmd("SADD")
                .arg(queues_key(&self.config.prefix))
                .arg(&keys.queue)
                .exec_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("registering periodic schedules"))?;
        }
        let mut invocation = scripts::SYNC_PERIODIC.key(keys.periodic());
        invocation.arg(now_ms).arg(keys.periodic_state(""));
        for (name, description) in declared {
            invocation.arg(name).arg(description);
        }
        invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("registering periodic schedules"))
    }

    /// The known schedules of `keys`' queue: name -> description JSON, sorted by name.
    pub async fn periodic_schedules(&self, keys: &QueueKeys) -> Result<Vec<(String, String)>, StorageError> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys.periodic())
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("listing periodic schedules"))?;
        let mut all: Vec<(String, String)> = all.into_iter().collect();
        all.sort();
        Ok(all)
    }

    /// The stored state of schedule `name` of `keys`' queue.
    pub async fn periodic_state(&self, keys: &QueueKeys, name: &str) -> Result<PeriodicState, StorageError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys.periodic_state(name))
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("reading a periodic schedule"))?;
        let ms = |f: &str| h.get(f).and_then(|v| v.parse().ok());
        Ok(PeriodicState {
            last_due_ms: ms("last_due"),
            last_id: h.get("last_id").cloned(),
            last_fired_at_ms: ms("last_fired_at"),
            last_skipped_ms: ms("last_skipped"),
        })
    }
}
