//! The server's settings that can lose jobs: an eviction policy other than `noeviction` lets
//! Redis delete queued jobs to make room, silently. Read once at start by the worker and the
//! producer, which log a warning with the fix, and shown by `quern stats`.
//!
//! Read with `INFO server` and `INFO memory` (Redis 6.2 takes one section per `INFO`), which
//! managed services allow; `CONFIG GET` when `INFO` is refused (an ACL, a renamed command). When
//! neither is allowed the health says so, and nothing fails.

use std::collections::HashMap;

use serde::Serialize;

use super::Storage;

/// The only eviction policy under which Redis never deletes a key to make room.
pub const NOEVICTION: &str = "noeviction";

/// What the server says about its memory settings. A field is `None` when the server did not
/// tell (see [`unavailable`](Self::unavailable)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerHealth {
    /// `maxmemory-policy`: anything but `noeviction` may delete queued jobs once `maxmemory`
    /// is reached.
    pub maxmemory_policy: Option<String>,
    /// `maxmemory` in bytes; 0 means no limit (a 64-bit server then grows until the OS stops it).
    pub maxmemory: Option<u64>,
    /// Memory in use, in bytes: how close enqueues are to failing with `OOM` under `noeviction`.
    pub used_memory: Option<u64>,
    /// The server's version: Quern needs 6.2 or later.
    pub redis_version: Option<String>,
    /// Why the settings could not be read (both `INFO` and `CONFIG GET` refused), else `None`.
    pub unavailable: Option<String>,
}

impl ServerHealth {
    /// Whether the policy is known to evict keys (anything but `noeviction`).
    pub fn evicts(&self) -> bool {
        self.maxmemory_policy.as_deref().is_some_and(|p| p != NOEVICTION)
    }

    /// `used_memory` as a share of `maxmemory`, when both are known and a limit is set.
    pub fn memory_used_ratio(&self) -> Option<f64> {
        match (self.used_memory, self.maxmemory) {
            (Some(used), Some(max)) if max > 0 => Some(used as f64 / max as f64),
            _ => None,
        }
    }

    /// The warning to give about these settings, with what to do; `None` when all is well.
    pub fn warning(&self) -> Option<String> {
        if let Some(why) = &self.unavailable {
            return Some(format!(
                "cannot read Redis's maxmemory-policy ({why}); make sure it is `noeviction`, or \
                 Redis may delete queued jobs when its memory is full"
            ));
        }
        if self.evicts() {
            let policy = self.maxmemory_policy.as_deref().unwrap_or_default();
            return Some(format!(
                "Redis maxmemory-policy is `{policy}`: when its memory is full Redis deletes keys, \
                 queued jobs included, without telling anyone. Set it to `noeviction` \
                 (`CONFIG SET maxmemory-policy noeviction`, or `maxmemory-policy noeviction` in \
                 redis.conf, or your provider's parameter group)"
            ));
        }
        match self.memory_used_ratio() {
            Some(r) if r >= 0.9 => Some(format!(
                "Redis uses {:.0}% of its maxmemory: at 100% enqueues fail with OOM until \
                 workers drain queues or maxmemory is raised",
                r * 100.0
            )),
            _ => None,
        }
    }

    /// One line for humans (under `quern stats`): the version, the policy, memory used of the
    /// limit, and the warning if there is one.
    pub fn summary(&self) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        let mut line = format!(
            "redis {}: maxmemory-policy {}",
            self.redis_version.as_deref().unwrap_or("(version unknown)"),
            self.maxmemory_policy.as_deref().unwrap_or("unknown"),
        );
        match (self.used_memory, self.maxmemory) {
            (Some(used), Some(0)) => line += &format!(", {} used, no maxmemory", mib(used)),
            (Some(used), Some(max)) => line += &format!(", {} used of maxmemory {}", mib(used), mib(max)),
            _ => {}
        }
        if let Some(warning) = self.warning() {
            line += &format!("\nwarning: {warning}");
        }
        line
    }

    fn from_fields(fields: &HashMap<String, String>) -> Self {
        let get = |k: &str| fields.get(k).cloned();
        let num = |k: &str| fields.get(k).and_then(|v| v.trim().parse().ok());
        ServerHealth {
            maxmemory_policy: get("maxmemory_policy").or_else(|| get("maxmemory-policy")),
            maxmemory: num("maxmemory"),
            used_memory: num("used_memory"),
            redis_version: get("redis_version"),
            unavailable: None,
        }
    }
}

/// The `key:value` lines of an `INFO` reply.
fn parse_info(text: &str, into: &mut HashMap<String, String>) {
    for line in text.lines() {
        if let Some((k, v)) = line.trim_end().split_once(':')
            && !k.starts_with('#')
        {
            into.insert(k.to_owned(), v.to_owned());
        }
    }
}

impl Storage {
    /// The server's memory settings and version; never fails (what could not be read is
    /// `None`, and [`ServerHealth::unavailable`] says why).
    pub async fn server_health(&self) -> ServerHealth {
        let mut conn = self.conn();
        let info: Result<(String, String), _> = redis::pipe()
            .cmd("INFO")
            .arg("server")
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await;
        let info_err = match info {
            Ok((server, memory)) => {
                let mut fields = HashMap::new();
                parse_info(&server, &mut fields);
                parse_info(&memory, &mut fields);
                let health = ServerHealth::from_fields(&fields);
                if health.maxmemory_policy.is_some() {
                    return health;
                }
                "INFO has no maxmemory_policy".to_owned()
            }
            Err(e) => e.to_string(),
        };
        let config: Result<HashMap<String, String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .query_async(&mut conn)
            .await;
        match config {
            Ok(fields) if fields.contains_key("maxmemory-policy") => ServerHealth::from_fields(&fields),
            Ok(_) => ServerHealth {
                unavailable: Some(format!("INFO: {info_err}; CONFIG GET: no maxmemory-policy")),
                ..ServerHealth::default()
            },
            Err(e) => ServerHealth {
                unavailable: Some(format!("INFO: {info_err}; CONFIG GET: {e}")),
                ..ServerHealth::default()
            },
        }
    }

    /// Reads [`server_health`](Self::server_health) and logs what could lose jobs or fail
    /// enqueues: one WARN with the fix, or an INFO line when the settings cannot be read.
    /// `who` names the caller in the log (`worker`, `producer`).
    pub async fn check_server(&self, who: &'static str) -> ServerHealth {
        let health = self.server_health().await;
        if let Some(warning) = health.warning() {
            if health.unavailable.is_some() {
                tracing::info!(storage = %self.describe(), who, "{warning}");
            } else {
                tracing::warn!(storage = %self.describe(), who,
                    policy = health.maxmemory_policy.as_deref().unwrap_or("?"),
                    maxmemory = health.maxmemory.unwrap_or(0),
                    used_memory = health.used_memory.unwrap_or(0), "{warning}");
            }
        }
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_give_the_policy_the_limits_and_the_version() {
        let mut f = HashMap::new();
        parse_info("# Server\r\nredis_version:7.0.15\r\n", &mut f);
        parse_info(
            "# Memory\r\nused_memory:1000\r\nmaxmemory:2000\r\nmaxmemory_policy:allkeys-lru\r\n",
            &mut f,
        );
        let h = ServerHealth::from_fields(&f);
        assert_eq!(h.maxmemory_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!((h.used_memory, h.maxmemory), (Some(1000), Some(2000)));
        assert_eq!(h.redis_version.as_deref(), Some("7.0.15"));
        assert!(h.evicts());
        assert!(
            h.warning()
                .unwrap()
                .contains("CONFIG SET maxmemory-policy noeviction")
        );
    }

    #[test]
    fn noeviction_warns_only_near_the_limit_and_unknown_says_so() {
        let mut h = ServerHealth {
            maxmemory_policy: Some(NOEVICTION.into()),
            maxmemory: Some(0),
            used_memory: Some(10),
            ..ServerHealth::default()
        };
        assert_eq!(h.warning(), None, "no limit");
        h.maxmemory = Some(11);
        assert!(h.warning().unwrap().contains("OOM"));
        let unknown = ServerHealth {
            unavailable: Some("NOPERM".into()),
            ..ServerHealth::default()
        };
        assert!(!unknown.evicts());
        assert!(
            unknown
                .warning()
                .unwrap()
                .contains("make sure it is `noeviction`")
        );
    }
}
