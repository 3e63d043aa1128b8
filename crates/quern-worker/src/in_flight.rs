//! The stream entries this worker holds: what the lease renewer renews.

use std::collections::HashSet;
use std::sync::Mutex;

/// Entry ids as `(ms, seq)` pairs: Redis writes every stream id as `<ms>-<seq>`, so tracking them
/// needs neither a copy of the string nor hashing text. An id that does not parse (no Redis
/// writes one) is kept as text, so it is still renewed.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    inner: Mutex<Sets>,
}

#[derive(Debug, Default)]
struct Sets {
    parsed: HashSet<(u64, u64)>,
    other: HashSet<String>,
}

fn parse(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl InFlight {
    /// Adds the ids of a fetched batch, under one lock.
    pub(crate) fn insert_all<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut sets = self.lock();
        for id in ids {
            match parse(id) {
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
            match parse(id) {
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
