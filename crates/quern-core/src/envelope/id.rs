//! Job ids: Quern's time-ordered ids, and the ids that stand for a job by where it is stored.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A job's id: stable across retries, unique per enqueue.
///
/// Quern generates 26-character, time-ordered ids (a UUIDv7's 128 bits in Crockford base32, as
/// ULIDs are written); producers in other languages may use any non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new, unique, time-ordered id.
    pub fn new() -> Self {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let bits = uuid_v7_bits();
        let mut text = String::with_capacity(26);
        for i in (0..26).rev() {
            text.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
        }
        JobId(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a job that carries none in its envelope: its queue and the broker's entry id
    /// (`emails/1733079705123-0`). Such an id says where the job was first stored, so finding
    /// it needs no index.
    pub fn for_entry(queue: &str, entry_id: &str) -> Self {
        let mut s = String::with_capacity(queue.len() + 1 + entry_id.len());
        s.push_str(queue);
        s.push('/');
        s.push_str(entry_id);
        JobId(s)
    }

    /// The `(queue, entry id)` an id made by [`for_entry`](Self::for_entry) names (split at
    /// its last `/`); `None` for other ids.
    pub fn entry(&self) -> Option<(&str, &str)> {
        self.0
            .rsplit_once('/')
            .filter(|(q, e)| !q.is_empty() && !e.is_empty())
    }

    /// No id: what an envelope without one decodes to.
    pub(super) fn unset() -> Self {
        JobId(String::new())
    }

    /// An envelope's id when it carries none (the entry's id stands for it).
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes an envelope's `id`: any non-empty string (`docs/wire-format.md`).
pub(super) fn non_empty_id<'de, D: serde::Deserializer<'de>>(de: D) -> Result<JobId, D::Error> {
    let id = String::deserialize(de)?;
    if id.is_empty() {
        return Err(serde::de::Error::custom(
            "the job id is empty: leave `id` out (the stream entry id stands for it) or give a non-empty string",
        ));
    }
    Ok(JobId(id))
}

/// A UUIDv7 (RFC 9562) as a number: 48 bits of Unix ms, the version, a 12-bit counter that keeps
/// the ids one thread makes in one millisecond in order (it starts at a random value below 2048
/// each millisecond; when it runs out, the time part moves on by one ms), the variant, and 62
/// random bits. Per thread, so making an id takes no lock.
pub(super) fn uuid_v7_bits() -> u128 {
    use std::cell::Cell;
    thread_local! {
        /// (ms, counter) of the last id this thread made.
        static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (ms, counter) = LAST.with(|last| {
        let (last_ms, last_counter) = last.get();
        let next = if now > last_ms {
            (now, rand::random::<u64>() & 0x7FF)
        } else if last_counter < 0xFFF {
            (last_ms, last_counter + 1)
        } else {
            (last_ms + 1, rand::random::<u64>() & 0x7FF)
        };
        last.set(next);
        next
    });
    let random = rand::random::<u64>() & ((1 << 62) - 1);
    (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | (u128::from(counter) << 64)
        | (0b10 << 62)
        | u128::from(random)
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<String> for JobId {
    fn from(s: String) -> Self {
        JobId(s)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        JobId(s.to_owned())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest caller-supplied job id, in bytes.
pub const MAX_CALLER_ID_BYTES: usize = 128;

/// A caller-supplied job id that cannot be used, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job id {shown}: {rule}{}", at.map(|at| format!(" (at byte {at})")).unwrap_or_default())]
pub struct InvalidJobId {
    /// The id as given, quoted, cut to its first 64 characters.
    pub shown: String,
    /// The rule it broke.
    pub rule: &'static str,
    /// Where, for a character outside the allowed set: its byte offset.
    pub at: Option<usize>,
}

impl JobId {
    /// A caller-supplied id, checked: 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.` and
    /// `:`. (`/` is kept for the ids Quern makes from where a job is stored, so a caller's id
    /// never collides with one of those.)
    ///
    /// ```
    /// use quern_core::JobId;
    /// assert!(JobId::caller("order-42:receipt").is_ok());
    /// let err = JobId::caller("order 42").unwrap_err();
    /// assert_eq!(err.to_string(), r#"invalid job id "order 42": it has a character outside A-Z a-z 0-9 - _ . : (at byte 5)"#);
    /// ```
    pub fn caller(id: impl Into<String>) -> Result<Self, InvalidJobId> {
        let id = id.into();
        let bad = |rule: &'static str, at: Option<usize>| {
            let cut: String = id.chars().take(64).collect();
            let more = if cut.len() < id.len() { "…" } else { "" };
            InvalidJobId {
                shown: format!("{cut:?}{more}"),
                rule,
                at,
            }
        };
        if id.is_empty() {
            return Err(bad("it is empty", None));
        }
        if id.len() > MAX_CALLER_ID_BYTES {
            return Err(bad("it is longer than 128 bytes", None));
        }
        if let Some(at) = id
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
        {
            return Err(bad("it has a character outside A-Z a-z 0-9 - _ . :", Some(at)));
        }
        Ok(JobId(id))
    }
}
