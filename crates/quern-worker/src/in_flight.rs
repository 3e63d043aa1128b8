//! The stream entries this worker holds: what the lease renewer renews.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

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
}

impl Slot {
    fn new() -> (Self, CancellationToken) {
        let cancel = CancellationToken::new();
        (
            Slot {
                settling: false,
                cancel: cancel.clone(),
            },
            cancel,
        )
    }
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
    pub(crate) fn insert_all<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<CancellationToken> {
        let mut sets = self.lock();
        let mut tokens = Vec::new();
        for id in ids {
            let (slot, token) = Slot::new();
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
}
