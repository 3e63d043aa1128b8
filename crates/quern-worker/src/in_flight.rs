//! The stream entries this worker holds: what the lease renewer renews.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use quern_core::Delivery;
use quern_redis::keys::parse_entry_id;
use tokio_util::sync::CancellationToken;

/// Entry ids as `(ms, seq)` pairs: Redis writes every stream id as `<ms>-<seq>`, so tracking them
/// needs neither a copy of the string nor hashing text. An id that does not parse (no Redis
/// writes one) is kept as text, so it is still renewed.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    inner: Mutex<Sets>,
}

#[derive(Debug, Default)]
struct Sets {
    /// Each id, and whether its outcome is being written (`true`) or it is simply held.
    parsed: HashMap<(u64, u64), Slot, BuildHasherDefault<IdHasher>>,
    other: HashMap<String, Slot>,
}

/// One held entry.
#[derive(Debug)]
struct Slot {
    /// Whether its outcome is being written.
    settling: bool,
    /// Fired when the job is cancelled while it runs; its execution's context holds a clone.
    cancel: CancellationToken,
    /// The job's id when it is not `<queue>/<entry id>` (an id of its own, or it moved).
    job: Option<Box<str>>,
}

impl Slot {
    fn new(job: Option<Box<str>>) -> (Self, CancellationToken) {
        let cancel = CancellationToken::new();
        (
            Slot {
                settling: false,
                cancel: cancel.clone(),
                job,
            },
            cancel,
        )
    }
}

/// The id a delivery's job has when it is not `<queue>/<entry id>`: the one its entry carries
/// (it moved here), or the one its envelope starts with (Quern writes `id` first). Read without
/// decoding the envelope; a job with an id elsewhere in its envelope is found by neither (only
/// other producers write those, and only a cancel of it while it runs is missed).
pub(crate) fn own_id(d: &Delivery) -> Option<Box<str>> {
    if let Some(id) = &d.job_id {
        return Some(id.as_str().into());
    }
    let rest = d.envelope.strip_prefix(br#"{"id":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest.get(end) == Some(&b'"'))
        .then(|| std::str::from_utf8(&rest[..end]).ok().map(Into::into))
        .flatten()
}

/// Ids come from Redis, not from an adversary, and are already well spread: a multiply-xor
/// hash is enough, and much cheaper than SipHash on every fetch and settle.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl InFlight {
    /// Adds the ids of a fetched batch, under one lock; returns each one's cancellation
    /// signal, in order.
    #[cfg(test)]
    pub(crate) fn insert_all<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<CancellationToken> {
        self.insert_jobs(ids.into_iter().map(|id| (id, None)))
    }

    /// Adds a fetched batch's deliveries, under one lock; returns each one's cancellation
    /// signal, in order.
    pub(crate) fn insert_deliveries(&self, batch: &[Delivery]) -> Vec<CancellationToken> {
        self.insert_jobs(batch.iter().map(|d| (d.entry_id.as_str(), own_id(d))))
    }

    fn insert_jobs<'a>(
        &self,
        jobs: impl IntoIterator<Item = (&'a str, Option<Box<str>>)>,
    ) -> Vec<CancellationToken> {
        let mut sets = self.lock();
        let mut tokens = Vec::new();
        for (id, job) in jobs {
            let (slot, token) = Slot::new(job);
            tokens.push(token);
            match parse_entry_id(id) {
                Some(key) => {
                    sets.parsed.insert(key, slot);
                }
                None => {
                    sets.other.insert(id.to_owned(), slot);
                }
            }
        }
        tokens
    }

    /// Fires the cancellation signal of held entry `id`; whether it was held and not yet
    /// cancelled.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        let sets = self.lock();
        let slot = match parse_entry_id(id) {
            Some(key) => sets.parsed.get(&key),
            None => sets.other.get(id),
        };
        match slot {
            Some(slot) if !slot.cancel.is_cancelled() => {
                slot.cancel.cancel();
                true
            }
            Some(_) => false,
            None => false,
        }
    }

    /// Removes the ids of a settled batch, under one lock.
    pub(crate) fn remove_all<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut sets = self.lock();
        for id in ids {
            match parse_entry_id(id) {
                Some(key) => {
                    sets.parsed.remove(&key);
                }
                None => {
                    sets.other.remove(id);
                }
            }
        }
    }

    /// Marks the ids of a batch about to be settled, under one lock: their outcome is being
    /// written (they are still renewed until it is). A renewal that finds one of them gone is
    /// seeing that write, not a lost lease.
    pub(crate) fn settling<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut sets = self.lock();
        for id in ids {
            let flag = match parse_entry_id(id) {
                Some(key) => sets.parsed.get_mut(&key),
                None => sets.other.get_mut(id),
            };
            if let Some(slot) = flag {
                slot.settling = true;
            }
        }
    }

    /// Whether `id` is held and no outcome of it is being written: not settled, not settling,
    /// its lease not found lost.
    pub(crate) fn holds(&self, id: &str) -> bool {
        let sets = self.lock();
        let settling = match parse_entry_id(id) {
            Some(key) => sets.parsed.get(&key),
            None => sets.other.get(id),
        };
        settling.is_some_and(|slot| !slot.settling)
    }

    /// The `(entry id, job id)` of every job held in `queue`.
    pub(crate) fn jobs(&self, queue: &str) -> Vec<(String, String)> {
        let sets = self.lock();
        let job = |entry: String, slot: &Slot| {
            let id = match &slot.job {
                Some(own) => own.to_string(),
                None => quern_core::JobId::for_entry(queue, &entry).to_string(),
            };
            (entry, id)
        };
        sets.parsed
            .iter()
            .map(|((ms, seq), slot)| job(format!("{ms}-{seq}"), slot))
            .chain(sets.other.iter().map(|(e, slot)| job(e.clone(), slot)))
            .collect()
    }

    /// Every id held, as Redis writes it.
    pub(crate) fn ids(&self) -> Vec<String> {
        let sets = self.lock();
        sets.parsed
            .keys()
            .map(|(ms, seq)| format!("{ms}-{seq}"))
            .chain(sets.other.keys().cloned())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sets> {
        // Nothing panics under this lock; a poisoned set is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_odd_ones_are_kept() {
        let f = InFlight::default();
        f.insert_all(["1700000000000-0", "1700000000000-17", "not-an-id", "odd"]);
        let mut ids = f.ids();
        ids.sort();
        assert_eq!(ids, ["1700000000000-0", "1700000000000-17", "not-an-id", "odd"]);
        f.remove_all(["1700000000000-17", "odd"]);
        let mut ids = f.ids();
        ids.sort();
        assert_eq!(ids, ["1700000000000-0", "not-an-id"]);
        assert!(f.holds("1700000000000-0") && f.holds("not-an-id"));
        assert!(!f.holds("1700000000000-17") && !f.holds("odd"));
        f.settling(["1700000000000-0", "not-an-id"]);
        assert!(!f.holds("1700000000000-0") && !f.holds("not-an-id"));
        assert_eq!(f.ids().len(), 2, "still renewed while settling");
    }

    #[test]
    fn a_delivery_names_its_own_id_without_a_decode() {
        let plain = Delivery::new("1-0", br#"{"job":"a","payload":{"id":"x"}}"#.to_vec());
        let own = Delivery::new("2-0", br#"{"id":"order:7","job":"a","payload":{}}"#.to_vec());
        let moved = Delivery::new("3-0", b"{}".to_vec()).with_job_id(Some("q/1-0".into()));
        let escaped = Delivery::new("4-0", br#"{"id":"a\"b","job":"a","payload":{}}"#.to_vec());
        assert_eq!(own_id(&plain), None);
        assert_eq!(own_id(&own).as_deref(), Some("order:7"));
        assert_eq!(own_id(&moved).as_deref(), Some("q/1-0"));
        assert_eq!(own_id(&escaped), None);
        let f = InFlight::default();
        let tokens = f.insert_deliveries(&[plain, own, moved]);
        assert_eq!(tokens.len(), 3);
        let mut jobs = f.jobs("q");
        jobs.sort();
        assert_eq!(
            jobs,
            [
                ("1-0".to_owned(), "q/1-0".to_owned()),
                ("2-0".to_owned(), "order:7".to_owned()),
                ("3-0".to_owned(), "q/1-0".to_owned())
            ]
        );
        assert!(f.cancel("2-0") && tokens[1].is_cancelled() && !tokens[0].is_cancelled());
        assert!(!f.cancel("2-0"), "once");
    }
}
