//! [`Inspector`]: the typed admin API over a [`Storage`] — queues, counts, dead jobs, and any job
//! found by its id without a scan.
//!
//! Every answer is a typed value ([`QueueStats`], [`DeadJob`], [`RetryDead`],
//! [`JobInfo`](quern_core::JobInfo)), never JSON text to pick apart. The rules of admin actions live here, not in the CLI that calls
//! them: a dead job retried starts again at attempt 1 and keeps its id.
//!
//! # Layout
//! - this file — [`Inspector`], queues, counts and dead jobs.
//! - `find` — [`find_job`](Inspector::find_job): any job by id, in O(1) or O(log n) per queue.
//! - `queued` — [`queued_jobs`](Inspector::queued_jobs): what waits in a queue, with envelopes.
//! - `control` — [`cancel`](Inspector::cancel) a job, [`pause`](Inspector::pause) and
//!   [`resume`](Inspector::resume) a queue.

use quern_core::envelope::decode_envelope;
use quern_core::{DeadRecord, JobId, QueueStats};

use crate::error::StorageError;
use crate::keys::{QueueKeys, validate_queue};
use crate::scripts;
use crate::storage::{ServerHealth, Storage};

mod control;
mod find;
mod queued;

pub use control::{CANCELLED_KEPT_MS, Cancelled, Paused};

/// Dead jobs read per round trip by [`Inspector::retry_all_dead`].
const PAGE: usize = 1000;

/// The admin API over a [`Storage`]. Cheap to clone (it holds the storage, which shares one
/// connection).
///
/// ```no_run
/// # async fn demo() -> Result<(), quern_redis::StorageError> {
/// use quern_redis::{Inspector, RedisConfig, Storage};
///
/// let inspector = Inspector::new(Storage::connect(RedisConfig::from_env()).await?);
/// for queue in inspector.queues().await? {
///     let stats = inspector.stats(&queue).await?;
///     println!("{queue}: {} pending, {} dead", stats.pending, stats.dead);
/// }
/// if let Some(job) = inspector.find_job("emails/1764081268123-0", None).await? {
///     println!("{} is {}", job.id, job.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inspector {
    storage: Storage,
}

/// A dead job, as the dead set keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadJob {
    /// The job id.
    pub id: String,
    /// The queue it died on (whose dead set holds it).
    pub queue: String,
    /// What is kept about it.
    pub record: StoredRecord,
}

impl DeadJob {
    /// The dead record, when it parsed.
    pub fn parsed(&self) -> Option<&DeadRecord> {
        match &self.record {
            StoredRecord::Parsed(r) => Some(r),
            StoredRecord::Unparsed(_) => None,
        }
    }
}

/// A dead job's record as stored: parsed, or the text itself when it is not a [`DeadRecord`]
/// (written by something else, or by a future version), so nothing stored is hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredRecord {
    /// The record.
    Parsed(Box<DeadRecord>),
    /// The stored text, which does not parse as a record.
    Unparsed(String),
}

impl StoredRecord {
    fn from_text(text: String) -> Self {
        match serde_json::from_str::<DeadRecord>(&text) {
            Ok(r) => StoredRecord::Parsed(Box::new(r)),
            Err(_) => StoredRecord::Unparsed(text),
        }
    }
}

/// What [`Inspector::retry_dead`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDead {
    /// Back in `queue`, at attempt 1, under its id.
    Queued {
        /// The queue it runs on.
        queue: String,
    },
    /// There is no dead job with that id (any more).
    NotDead,
    /// It stays dead: what was kept cannot run again.
    NotRetryable {
        /// Why, for humans.
        why: String,
    },
}

/// What [`Inspector::retry_all_dead`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetriedDead {
    /// Jobs back in their queue.
    pub revived: u64,
    /// Jobs left dead because what was kept cannot run again
    /// ([`RetryDead::NotRetryable`]).
    pub refused: u64,
}

impl Inspector {
    /// An inspector over `storage`.
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Names of all queues that have seen a job, sorted.
    pub async fn queues(&self) -> Result<Vec<String>, StorageError> {
        self.storage.queues().await
    }

    /// The server's memory settings: whether Redis may evict queued jobs (its
    /// `maxmemory-policy`), and how close it is to refusing enqueues (`used_memory` against
    /// `maxmemory`). Never fails: what could not be read says why.
    pub async fn server_health(&self) -> ServerHealth {
        self.storage.server_health().await
    }

    /// Counts for `queue`. Trims its completed entries first, so it needs a primary, not a
    /// read-only replica.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, StorageError> {
        self.storage.stats(&self.keys(queue)?).await
    }

    /// Up to `limit` dead jobs of `queue`, newest first.
    pub async fn dead_jobs(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, StorageError> {
        let keys = self.keys(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.storage.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(0)
            .arg(limit - 1)
            .arg("REV")
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("listing dead jobs"))?;
        let records = self.records(&keys, &ids).await?;
        Ok(ids
            .into_iter()
            .zip(records)
            .filter_map(|(id, text)| {
                text.map(|text| DeadJob {
                    id,
                    queue: keys.queue.clone(),
                    record: StoredRecord::from_text(text),
                })
            })
            .collect())
    }

    /// The dead job `id` of `queue`, or of any queue when `None`.
    pub async fn dead_job(&self, id: &str, queue: Option<&str>) -> Result<Option<DeadJob>, StorageError> {
        Ok(self.dead_text(id, queue).await?.map(|(keys, text)| DeadJob {
            id: id.to_owned(),
            queue: keys.queue,
            record: StoredRecord::from_text(text),
        }))
    }

    /// Moves the dead job `id` (of `queue`, or of any queue when `None`) back to its queue for
    /// a fresh set of attempts: its envelope as stored, at attempt 1, under the same id (written
    /// into the envelope when it had none), and indexed by it.
    pub async fn retry_dead(&self, id: &str, queue: Option<&str>) -> Result<RetryDead, StorageError> {
        let Some((keys, text)) = self.dead_text(id, queue).await? else {
            return Ok(RetryDead::NotDead);
        };
        let (job_id, envelope) = match revived(id, &text) {
            Ok(revived) => revived,
            Err(why) => return Ok(RetryDead::NotRetryable { why }),
        };
        let mut pipe = redis::pipe();
        retry_dead_cmd(&mut pipe, &keys, id, &job_id, &envelope);
        let (entry,): (Option<String>,) = self.query_scripts(&pipe, "retrying a dead job").await?;
        Ok(match entry {
            Some(_) => RetryDead::Queued { queue: keys.queue },
            None => RetryDead::NotDead,
        })
    }

    /// Retries every dead job of `queue`, oldest first, a page per round trip; those that
    /// cannot run again stay dead and are counted as refused.
    pub async fn retry_all_dead(&self, queue: &str) -> Result<RetriedDead, StorageError> {
        let keys = self.keys(queue)?;
        let mut conn = self.storage.conn();
        let total: u64 = redis::cmd("ZCARD")
            .arg(&keys.dead)
            .query_async(&mut conn)
            .await
            .map_err(StorageError::redis("retrying dead jobs"))?;
        let mut done = RetriedDead::default();
        let mut handled = 0u64;
        // Revived jobs leave the set and refused ones stay at its head, oldest first: the next
        // page starts after them. Jobs that die meanwhile wait for the next call.
        while handled < total {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&keys.dead)
                .arg(done.refused)
                .arg(done.refused + PAGE as u64 - 1)
                .query_async(&mut conn)
                .await
                .map_err(StorageError::redis("retrying dead jobs"))?;
            if ids.is_empty() {
                break;
            }
            handled += ids.len() as u64;
            let records = self.records(&keys, &ids).await?;
            let mut pipe = redis::pipe();
            let mut queued = 0;
            for (id, text) in ids.iter().zip(records) {
                let Some(text) = text else { continue };
                match revived(id, &text) {
                    Ok((job_id, envelope)) => {
                        retry_dead_cmd(&mut pipe, &keys, id, &job_id, &envelope);
                        queued += 1;
                    }
                    Err(_) => done.refused += 1,
                }
            }
            if queued > 0 {
                let entries: Vec<Option<String>> = self.query_scripts(&pipe, "retrying dead jobs").await?;
                done.revived += entries.iter().filter(|e| e.is_some()).count() as u64;
            }
            if ids.len() < PAGE {
                break;
            }
        }
        Ok(done)
    }

    /// Deletes the dead job `id` (of `queue`, or of any queue when `None`); false when there
    /// was none.
    pub async fn delete_dead(&self, id: &str, queue: Option<&str>) -> Result<bool, StorageError> {
        let Some((keys, _)) = self.dead_text(id, queue).await? else {
            return Ok(false);
        };
        let (n, _): (i64, i64) = redis::pipe()
            .cmd("ZREM")
            .arg(&keys.dead)
            .arg(id)
            .cmd("HDEL")
            .arg(&keys.dead_records)
            .arg(id)
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("deleting a dead job"))?;
        Ok(n == 1)
    }

    /// Deletes every dead job of `queue`, or of every queue when `None`; returns how many.
    pub async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, StorageError> {
        let mut total = 0;
        for keys in self.candidates(None, queue).await? {
            let (n, _, _): (u64, (), ()) = redis::pipe()
                .cmd("ZCARD")
                .arg(&keys.dead)
                .cmd("UNLINK")
                .arg(&keys.dead)
                .cmd("UNLINK")
                .arg(&keys.dead_records)
                .query_async(&mut self.storage.conn())
                .await
                .map_err(StorageError::redis("purging dead jobs"))?;
            total += n;
        }
        Ok(total)
    }

    /// The keys of `queue`, refusing names that cannot be queues.
    fn keys(&self, queue: &str) -> Result<QueueKeys, StorageError> {
        validate_queue(queue)?;
        Ok(self.storage.keys(queue))
    }

    /// The queues to look in for job `id`: `queue` if given, else every known queue, the one
    /// named by an id `<queue>/<entry id>` first (listed or not: a queue fed by another
    /// program may never have been recorded).
    async fn candidates(
        &self,
        id: Option<&str>,
        queue: Option<&str>,
    ) -> Result<Vec<QueueKeys>, StorageError> {
        if let Some(q) = queue {
            return Ok(vec![self.keys(q)?]);
        }
        let mut names = self.storage.queues().await?;
        if let Some((own, _)) = id.and_then(find::entry_of) {
            names.retain(|q| q != own);
            names.insert(0, own.to_owned());
        }
        Ok(names.iter().map(|q| self.storage.keys(q)).collect())
    }

    /// The dead record text of `id`, and the queue holding it: one round trip for all queues.
    async fn dead_text(
        &self,
        id: &str,
        queue: Option<&str>,
    ) -> Result<Option<(QueueKeys, String)>, StorageError> {
        let queues = self.candidates(Some(id), queue).await?;
        if queues.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for keys in &queues {
            pipe.cmd("HGET").arg(&keys.dead_records).arg(id);
        }
        let texts: Vec<Option<String>> = pipe
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("reading a dead job"))?;
        Ok(queues.into_iter().zip(texts).find_map(|(k, t)| t.map(|t| (k, t))))
    }

    async fn records(&self, keys: &QueueKeys, ids: &[String]) -> Result<Vec<Option<String>>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("HMGET")
            .arg(&keys.dead_records)
            .arg(ids)
            .query_async(&mut self.storage.conn())
            .await
            .map_err(StorageError::redis("reading dead jobs"))
    }

    /// Runs a pipeline of scripts and reads its replies, loading the scripts first if Redis
    /// forgot them (the scripts run here write nothing when run twice).
    async fn query_scripts<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        context: &'static str,
    ) -> Result<T, StorageError> {
        let mut conn = self.storage.conn();
        match pipe.query_async(&mut conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.storage.load_scripts().await?;
                pipe.query_async(&mut conn)
                    .await
                    .map_err(StorageError::redis(context))
            }
            other => other.map_err(StorageError::redis(context)),
        }
    }
}

/// `retry_dead.lua` for one job.
fn retry_dead_cmd(pipe: &mut redis::Pipeline, keys: &QueueKeys, dead_id: &str, job_id: &str, envelope: &str) {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts::RETRY_DEAD.get_hash())
        .arg(4)
        .arg(&keys.stream)
        .arg(&keys.dead)
        .arg(&keys.dead_records)
        .arg(&keys.jobs)
        .arg(dead_id)
        .arg(envelope)
        .arg(job_id);
    pipe.add_command(cmd);
}

/// The job id and envelope a dead job runs again with, or why it cannot: the envelope exactly as
/// it was stored, at attempt 1 (its failure history kept), carrying its id.
fn revived(id: &str, record: &str) -> Result<(String, String), String> {
    let record: DeadRecord = serde_json::from_str(record)
        .map_err(|e| format!("its dead record is not one Quern wrote ({e}); see `dead show {id}`"))?;
    let Some(stored) = record.envelope else {
        return Err(format!(
            "what was stored is not valid UTF-8 text; see `dead show {id}`"
        ));
    };
    let mut env = decode_envelope(stored.as_bytes())
        .map_err(|e| format!("the stored job is not a Quern envelope ({e})"))?;
    env.attempt = 1;
    if env.id.is_unset() {
        env.id = JobId::from(id);
    }
    Ok((env.id.to_string(), env.encode()))
}

#[cfg(test)]
mod tests {
    use super::revived;
    use quern_core::{DeadReason, DeadRecord};

    fn record(stored: &[u8]) -> String {
        DeadRecord::new(
            "q/1-0".into(),
            "q",
            DeadReason::MaxAttempts,
            "m".into(),
            stored,
            5,
        )
        .encode()
    }

    #[test]
    fn a_revived_job_starts_again_at_attempt_one_under_its_id() {
        let stored = br#"{"job":"a","attempt":3,"max_attempts":3,"payload":{"n":1}}"#;
        let (id, env) = revived("q/1-0", &record(stored)).unwrap();
        assert_eq!(id, "q/1-0");
        let env = quern_core::envelope::decode_envelope(env.as_bytes()).unwrap();
        assert_eq!(
            (env.id.as_str(), env.attempt, env.max_attempts),
            ("q/1-0", 1, Some(3))
        );
        assert_eq!(env.payload.get(), r#"{"n":1}"#);

        let own = br#"{"id":"mine","job":"a","attempt":2,"payload":{}}"#;
        assert_eq!(revived("q/1-0", &record(own)).unwrap().0, "mine");

        assert!(
            revived("q/1-0", &record(b"\xff\xfe"))
                .unwrap_err()
                .contains("UTF-8")
        );
        assert!(
            revived("q/1-0", &record(b"{\"x\":1}"))
                .unwrap_err()
                .contains("not a Quern envelope")
        );
        assert!(revived("q/1-0", "not a record").is_err());
    }
}
