//! Controls that workers poll: a queue paused, a running job asked to stop.

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys};
use crate::scripts;

use super::Storage;

/// Where a job to cancel was found, as [`Storage::cancel`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelAt<'a> {
    /// In the stream, as this entry (queued or running).
    Entry(&'a str),
    /// Delayed, as this member of the delayed set.
    Scheduled(&'a str),
    /// Waiting for a retry, as this member of the retry set.
    Retrying(&'a str),
}

/// What [`Storage::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelDone {
    /// Removed: it will never run.
    Removed,
    /// It is running: its worker was asked to stop it, and it settles as cancelled.
    Requested,
    /// It completed before it could be cancelled.
    Finished,
    /// It was no longer there (it moved meanwhile: look again).
    Moved,
}

impl Storage {
    /// Pauses (`true`) or resumes the queue; whether that changed anything.
    pub async fn set_paused(&self, keys: &QueueKeys, paused: bool) -> Result<bool, StorageError> {
        let mut conn = self.conn();
        let changed: i64 = if paused {
            let set: Option<String> = redis::cmd("SET")
                .arg(&keys.paused)
                .arg(self.clock.now_ms())
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis("pausing a queue"))?;
            i64::from(set.is_some())
        } else {
            redis::cmd("DEL")
                .arg(&keys.paused)
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis("resuming a queue"))?
        };
        Ok(changed == 1)
    }

    /// Since when the queue is paused (ms since the epoch), or `None` when it is not.
    pub async fn paused_since(&self, keys: &QueueKeys) -> Result<Option<u64>, StorageError> {
        let since: Option<String> = redis::cmd("GET")
            .arg(&keys.paused)
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("reading whether a queue is paused"))?;
        Ok(since.map(|s| s.parse().unwrap_or(0)))
    }

    /// What a worker running the jobs `ids` of the queue polls, in one round trip: whether the
    /// queue is paused, and which of those jobs are asked to stop.
    pub async fn control(
        &self,
        keys: &QueueKeys,
        ids: &[String],
    ) -> Result<(bool, Vec<String>), StorageError> {
        let entries = ids;
        let mut conn = self.conn();
        let context = "reading queue controls";
        if entries.is_empty() {
            let paused: i64 = redis::cmd("EXISTS")
                .arg(&keys.paused)
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis(context))?;
            return Ok((paused == 1, Vec::new()));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&keys.paused);
        let cmd = pipe.cmd("MGET");
        for e in entries {
            cmd.arg(keys.cancel(e));
        }
        let (paused, flags): (i64, Vec<Option<String>>) = pipe
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis(context))?;
        let cancels = entries
            .iter()
            .zip(flags)
            .filter(|(_, f)| f.is_some())
            .map(|(e, _)| e.clone())
            .collect();
        Ok((paused == 1, cancels))
    }

    /// Cancels job `id` where it was found (`cancel.lua`), writing `record` (its
    /// [`FinishedRecord`](quern_core::FinishedRecord)) for `keep_ms` when it is removed.
    pub async fn cancel(
        &self,
        keys: &QueueKeys,
        id: &str,
        at: CancelAt<'_>,
        record: &str,
        keep_ms: u64,
    ) -> Result<CancelDone, StorageError> {
        let (entry, kind, member) = match at {
            CancelAt::Entry(e) => (e, "", ""),
            CancelAt::Scheduled(m) => ("", "s", m),
            CancelAt::Retrying(m) => ("", "r", m),
        };
        let cancel_key = keys.cancel(id);
        let done: String = scripts::CANCEL
            .key(&keys.stream)
            .key(&keys.scheduled)
            .key(&keys.retry)
            .key(&keys.jobs)
            .key(&keys.stats)
            .key(keys.done(id))
            .key(cancel_key)
            .arg(GROUP)
            .arg(id)
            .arg(entry)
            .arg(kind)
            .arg(record)
            .arg(keep_ms)
            .arg(member)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("cancelling a job"))?;
        match done.as_str() {
            "removed" => Ok(CancelDone::Removed),
            "requested" => Ok(CancelDone::Requested),
            "finished" => Ok(CancelDone::Finished),
            "moved" => Ok(CancelDone::Moved),
            other => Err(StorageError::Protocol {
                context: "cancelling a job",
                detail: format!("cancel.lua answered {other:?}"),
            }),
        }
    }
}
