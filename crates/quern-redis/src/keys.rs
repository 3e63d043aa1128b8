//! Every Redis key Quern uses, built in one place.
//!
//! All keys of a queue carry the queue name as a hash tag (`quern:{emails}:stream`), so a queue
//! lives in one Redis Cluster slot and its Lua scripts never cross slots.

use std::fmt;

/// The consumer group every worker of a queue reads through.
pub const GROUP: &str = "workers";

/// A queue name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue name {name:?}: {reason}")]
pub struct InvalidQueueName {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A stream entry id (`<ms>-<seq>`, as Redis writes every one) as numbers; `None` for anything else (no sign, no spaces, no overflow).
pub fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    fn number(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() || digits.len() > 20 {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            let d = d.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(d))
        })
    }
    let bytes = id.as_bytes();
    let dash = bytes.iter().position(|&b| b == b'-')?;
    Some((number(&bytes[..dash])?, number(&bytes[dash + 1..])?))
}

/// The time part of a stream entry id: when the entry was added (ms since the Unix epoch); 0 for
/// text that is not an entry id.
pub fn entry_ms(id: &str) -> u64 {
    parse_entry_id(id).map_or(0, |(ms, _)| ms)
}

/// Checks a queue name: 1 to 200 bytes, no `{`, `}` or whitespace (they would break the hash tag).
pub fn validate_queue(name: &str) -> Result<(), InvalidQueueName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 200 {
        "it is longer than 200 bytes"
    } else if name.contains(['{', '}']) {
        "it contains `{` or `}`"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(InvalidQueueName {
        name: name.to_owned(),
        reason,
    })
}

/// The keys of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The queue's name.
    pub queue: String,
    /// Stream: jobs ready to run and jobs running (pending entries of [`GROUP`]).
    /// Each entry has field `e` (the envelope JSON), optionally `r` (times its lease expired) and
    /// `i` (the job's id, written when the job moved here from another entry).
    pub stream: String,
    /// Sorted set: delayed jobs; member = envelope JSON, score = due time (ms since epoch).
    pub scheduled: String,
    /// Sorted set: jobs waiting for their next attempt; member = envelope JSON, score = due time.
    pub retry: String,
    /// Sorted set: dead jobs; member = job id, score = when it died (ms since epoch).
    pub dead: String,
    /// Hash: job id -> dead record JSON (envelope, reason, diagnostics, error chain).
    pub dead_records: String,
    /// List: a token pushed whenever a delayed job or retry is scheduled, so an idle promoter
    /// blocked on it wakes and recomputes when the next job is due. Trimmed to one element.
    pub wake: String,
    /// Hash: counters (`completed`, `failed`, `dead`).
    pub stats: String,
    /// Hash: job id -> where the job is, for the jobs that are not found from their id alone
    /// (an id `<queue>/<entry id>` names the stream entry the job was first stored as, and
    /// needs no index). It holds jobs with an id of their own (delayed, retried, snoozed,
    /// revived) and jobs that moved to another entry (a lease expiry, a release). Values:
    /// `e:<entry id>` (in the stream), `s:<due ms>:<envelope>` (in [`scheduled`](Self::scheduled),
    /// the envelope being its member), `r:<due ms>:<envelope>` (in [`retry`](Self::retry)). Every
    /// script that moves such a job rewrites its value in the same call; completion and
    /// dead-lettering remove it (dead jobs are found in [`dead_records`](Self::dead_records)).
    pub jobs: String,
    /// String: present while the queue is paused; its value is when it was paused (ms since
    /// the epoch). Workers claim nothing from a paused queue; jobs keep arriving and wait.
    pub paused: String,
    /// Prefix of the per-job keys (`…:done:<job id>`, `…:cancel:<job id>`).
    prefix: String,
}

impl QueueKeys {
    /// Keys of `queue` under `prefix` (Quern's default prefix is `quern`).
    pub fn new(prefix: &str, queue: &str) -> Self {
        let k = |suffix: &str| format!("{prefix}:{{{queue}}}:{suffix}");
        Self {
            queue: queue.to_owned(),
            stream: k("stream"),
            scheduled: k("scheduled"),
            retry: k("retry"),
            dead: k("dead"),
            dead_records: k("dead:records"),
            wake: k("wake"),
            stats: k("stats"),
            jobs: k("jobs"),
            paused: k("paused"),
            prefix: k(""),
        }
    }

    /// String: the [`FinishedRecord`](quern_core::FinishedRecord) JSON of job `id` — a completed
    /// job whose type keeps results, or a cancelled one — expiring when it is no longer kept.
    pub fn done(&self, id: &str) -> String {
        format!("{}done:{id}", self.prefix)
    }

    /// String: present while the running job `id` is asked to stop (a cancel). Keyed by the
    /// job's id, not its entry, so the request follows the job when it moves (its worker died
    /// and another one runs it). Expires on its own after a day.
    pub fn cancel(&self, id: &str) -> String {
        format!("{}cancel:{id}", self.prefix)
    }

    /// Hash: periodic schedule name -> its description JSON, for the schedules whose jobs go to
    /// this queue (written by every worker that declares them, at start; `docs/periodic-and-unique.md`).
    pub fn periodic(&self) -> String {
        format!("{}periodic", self.prefix)
    }

    /// Hash: the state of periodic schedule `name`: `last_due` (ms, the compare-and-set field),
    /// `last_id`, `last_fired_at`, `last_skipped`.
    pub fn periodic_state(&self, name: &str) -> String {
        format!("{}periodic:{name}", self.prefix)
    }

    /// Every fixed key of this queue (the per-job [`done`](Self::done) and
    /// [`cancel`](Self::cancel) keys expire on their own).
    pub fn all(&self) -> [&str; 9] {
        [
            &self.stream,
            &self.scheduled,
            &self.retry,
            &self.dead,
            &self.dead_records,
            &self.wake,
            &self.stats,
            &self.jobs,
            &self.paused,
        ]
    }
}

/// Set: the names of all queues that have seen a job (for `quern stats`).
pub fn queues_key(prefix: &str) -> String {
    format!("{prefix}:queues")
}

impl fmt::Display for QueueKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_stream_ids_only() {
        assert_eq!(parse_entry_id("1700000000000-17"), Some((1_700_000_000_000, 17)));
        assert_eq!(parse_entry_id("0-0"), Some((0, 0)));
        assert_eq!(parse_entry_id("18446744073709551615-1"), Some((u64::MAX, 1)));
        for bad in [
            "18446744073709551616-1",
            "-1",
            "1-",
            "1",
            "+1-2",
            "1-2-3",
            "a-1",
            "",
        ] {
            assert_eq!(parse_entry_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = QueueKeys::new("quern", "emails");
        assert_eq!(k.stream, "quern:{emails}:stream");
        assert_eq!(k.dead_records, "quern:{emails}:dead:records");
        assert_eq!(k.jobs, "quern:{emails}:jobs");
        assert_eq!(k.done("order-1"), "quern:{emails}:done:order-1");
        assert_eq!(k.cancel("emails/1-0"), "quern:{emails}:cancel:emails/1-0");
        assert!(k.all().iter().all(|key| key.contains("{emails}")));
    }

    #[test]
    fn bad_queue_names_are_refused() {
        assert!(validate_queue("emails").is_ok());
        assert!(validate_queue("").is_err());
        assert_eq!(
            validate_queue("a{b").unwrap_err().reason,
            "it contains `{` or `}`"
        );
        assert!(validate_queue("a b").is_err());
    }
}
