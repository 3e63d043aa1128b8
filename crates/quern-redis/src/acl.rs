//! The least-privilege Redis ACL rules of each role: the commands a producer, a worker and the
//! admin CLI send, and those their scripts call (Redis checks a script's commands and keys
//! against the caller's ACL too). `docs/security.md` shows these strings; a test checks that it
//! does, and `tests/acl.rs` in `quern-worker` runs each role with only its rules.
//!
//! Each role is given `~<prefix>:*` (every key Quern uses starts with the prefix: [`keys`]) and
//! no pub/sub channel. `AUTH` and `HELLO` need no rule; `SELECT` does, for a URL naming a
//! database other than 0 (add `+select`).
//!
//! [`keys`]: crate::keys

/// A producer: `enqueue`, `enqueue_many` (batches are `MULTI`/`EXEC` transactions),
/// `enqueue_in`/`enqueue_at` (`schedule.lua`: `ZADD`, `HSET`, `LPUSH`, `LTRIM`), a caller-supplied
/// id (`enqueue_id.lua`: `HGET`, `HEXISTS`, `EXISTS` first; for a unique key `GET` and `SET` of
/// its lock, and `XPENDING`, `XINFO GROUPS` to tell a running holder), recording the queue (`SADD`), the
/// start-up memory check (`INFO`), and loading scripts after a restart.
pub const PRODUCER: &str = "+xadd +sadd +multi +exec +evalsha +script|load +zadd +hset +lpush +ltrim +info +hget +hexists +exists +get +set +xpending +xinfo|groups";

/// A worker: the consumer group (`XGROUP CREATE` at start, `DELCONSUMER` at shutdown), claims
/// (`XREADGROUP`), lease renewal (`XCLAIM`), the wake-up wait (`BLPOP`), the start-up memory
/// check (`INFO`), and the scripts that complete, retry, dead-letter, promote, requeue,
/// release and trim (the other commands listed); the pause and cancel poll (`EXISTS`, `MGET`) and
/// `finish.lua` (a kept result, a cancelled job: `SET`, `DEL`); periodic schedules (registering
/// them at start: `SADD`, `sync_periodic.lua`'s `HSETNX`, `HKEYS`; reading their state:
/// `HGETALL`; `fire.lua`: `HGET`, `HEXISTS`).
pub const WORKER: &str = "+xgroup|create +xgroup|delconsumer +xinfo|groups +xreadgroup +xclaim +blpop \
     +evalsha +script|load +info +xack +xdel +xadd +xrange +xpending +xtrim +xlen +exists +hset +hdel \
     +hincrby +zadd +zrange +zrem +zcard +lpush +ltrim +mget +set +del \
     +sadd +hget +hgetall +hsetnx +hkeys +hexists";

/// The admin CLI and [`Inspector`](crate::Inspector): `stats` (counts, and the trim it does
/// first), `dead list/show/retry/delete/purge`, `job show`, `job cancel` (`cancel.lua`),
/// `queue pause/resume` (`SET`, `DEL`), and the memory check shown under
/// `stats`. `quern enqueue` is a producer's command: give its user [`PRODUCER`] as well.
pub const ADMIN: &str = "+smembers +xlen +zcard +hgetall +hget +hmget +zrange +zscore +zrem +hdel \
     +unlink +evalsha +script|load +info +exists +xinfo|groups +xpending +xtrim +xrange +xadd +hset \
     +get +set +del +hincrby +xdel";

/// The `ACL SETUSER` arguments after the user name and password for `commands` (one of
/// [`PRODUCER`], [`WORKER`], [`ADMIN`]) under key prefix `prefix` (Quern's default is `quern`):
/// `resetkeys ~<prefix>:* resetchannels -@all <commands>`.
///
/// ```
/// let rules = quern_redis::acl::rules("quern", quern_redis::acl::PRODUCER);
/// assert!(rules.starts_with("resetkeys ~quern:* resetchannels -@all +xadd"));
/// ```
pub fn rules(prefix: &str, commands: &str) -> String {
    format!("resetkeys ~{prefix}:* resetchannels -@all {commands}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_security_shows_every_rule_as_it_is() {
        let doc = include_str!("../../../docs/security.md");
        for (role, commands) in [("producer", PRODUCER), ("worker", WORKER), ("admin", ADMIN)] {
            let line = format!(
                "ACL SETUSER quern-{role} on >PASSWORD {}",
                rules("quern", commands)
            );
            assert!(
                doc.contains(&line),
                "docs/security.md lacks the {role} rules:\n{line}"
            );
        }
    }
}
