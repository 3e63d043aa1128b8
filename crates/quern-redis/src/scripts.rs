//! The Lua scripts, one per state transition, loaded from `scripts/*.lua`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        #[doc = concat!("`scripts/", $file, "`: see the contract at the top of the file.")]
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
}

script!(SCHEDULE, "schedule.lua");
script!(PROMOTE_DUE, "promote_due.lua");
script!(RETRY, "retry.lua");
script!(DEAD_LETTER, "dead_letter.lua");
script!(REQUEUE_EXPIRED, "requeue_expired.lua");
script!(RELEASE, "release.lua");
script!(RETRY_DEAD, "retry_dead.lua");
script!(COMPLETE, "complete.lua");
script!(TRIM_ACKED, "trim_acked.lua");

/// Every script, for loading them all after Redis forgot them (a restart, `SCRIPT FLUSH`).
pub fn all() -> [&'static Script; 9] {
    [
        &SCHEDULE,
        &PROMOTE_DUE,
        &RETRY,
        &DEAD_LETTER,
        &REQUEUE_EXPIRED,
        &RELEASE,
        &RETRY_DEAD,
        &COMPLETE,
        &TRIM_ACKED,
    ]
}
