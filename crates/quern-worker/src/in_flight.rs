//! The stream entries this worker holds: what the lease renewer renews.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use quern_redis::keys::parse_entry_id;

/// Entry ids as `(ms, seq)` pairs: Redis writes every stream id as `<ms>-<seq>`, so tracking them
/// needs neither a copy of the string nor hashing text. An id that does not parse (no Redis
/// writes one) is kept as text, so it is still renewed.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    inner: Mutex<Sets>,
}

#[derive(Debug, Default)]
struct Sets {
    parsed: HashSet<(u64, u64), BuildHasherDefault<IdHasher>>,
    other: HashSet<String>,
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
    /// Adds the ids of a fetched batch, under one lock.
    pub(crate) fn insert_all<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut sets = self.lock();
        for id in ids {
            match parse_entry_id(id) {
                Some(key) => {
                    sets.parsed.insert(key);
                }
                None => {
                    sets.other.insert(id.to_owned());
                }
            }
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

    /// Every id held, as Redis writes it.
    pub(crate) fn ids(&self) -> Vec<String> {
        let sets = self.lock();
        sets.parsed
            .iter()
            .map(|(ms, seq)| format!("{ms}-{seq}"))
            .chain(sets.other.iter().cloned())
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
    }
}
