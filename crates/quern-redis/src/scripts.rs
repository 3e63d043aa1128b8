//! The Lua scripts, one per state transition, loaded from `scripts/*.lua`.
//!
//! Scripts that need a job's id from its envelope, or move an entry to a new one, are prefixed
//! with the helpers in `scripts/lib/` (Redis scripts cannot share functions): the text Redis
//! runs is the helpers followed by the script, whose contract heads its own file.
//!
//! A full Redis (`maxmemory` reached under `noeviction`) refuses a script's first command that
//! may grow memory (`denyoom`: `XADD`, `ZADD`, `HSET`, `HINCRBY`…) but not one called after the
//! script has written. `complete`, `requeue_expired` and `release` write first with `XACK`,
//! which is not `denyoom`: a worker keeps completing jobs, and freeing memory, when Redis is
//! full. `retry` and `dead_letter` check the lease with `XPENDING` and write the next attempt
//! or the dead record before acknowledging (so that a write Redis refuses for any reason leaves
//! the job leased, not lost): a full Redis refuses them with `OOM`, which is retryable, and the
//! worker writes them once memory frees, renewing the job's lease meanwhile. `promote_due`
//! starts with an `XADD`, so due jobs wait until memory frees. The scripts
//! carry no `#!lua flags=allow-oom` shebang: it needs Redis 7, and Quern supports 6.2.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        #[doc = concat!("`scripts/", $file, "`: see the contract at the top of the file.")]
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
    ($name:ident, $file:literal, $($lib:literal),+) => {
        #[doc = concat!("`scripts/", $file, "`: see the contract at the top of the file.")]
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                $(include_str!(concat!("scripts/lib/", $lib)),)+
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
}

script!(SCHEDULE, "schedule.lua", "envelope_id.lua");
script!(PROMOTE_DUE, "promote_due.lua", "envelope_id.lua");
script!(COMPLETE, "complete.lua");
script!(RETRY, "retry.lua");
script!(DEAD_LETTER, "dead_letter.lua");
script!(
    REQUEUE_EXPIRED,
    "requeue_expired.lua",
    "envelope_id.lua",
    "moved_entry.lua"
);
script!(RELEASE, "release.lua", "envelope_id.lua", "moved_entry.lua");
script!(RETRY_DEAD, "retry_dead.lua");
script!(TRIM_ACKED, "trim_acked.lua");
script!(FIND_ENTRY, "find_entry.lua", "last_delivered.lua");
script!(ENQUEUE_ID, "enqueue_id.lua", "last_delivered.lua");
script!(FINISH, "finish.lua");
script!(CANCEL, "cancel.lua", "last_delivered.lua");
script!(FIRE, "fire.lua");
script!(SYNC_PERIODIC, "sync_periodic.lua");

/// Every script, for loading them all after Redis forgot them (a restart, `SCRIPT FLUSH`).
pub fn all() -> [&'static Script; 15] {
    [
        &SCHEDULE,
        &PROMOTE_DUE,
        &COMPLETE,
        &RETRY,
        &DEAD_LETTER,
        &REQUEUE_EXPIRED,
        &RELEASE,
        &RETRY_DEAD,
        &TRIM_ACKED,
        &FIND_ENTRY,
        &ENQUEUE_ID,
        &FINISH,
        &CANCEL,
        &FIRE,
        &SYNC_PERIODIC,
    ]
}
