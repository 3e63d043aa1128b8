//! Temporary stand-in; the full crate lands separately.
#![allow(missing_docs)]
use std::sync::atomic::{AtomicU64, Ordering};
pub fn redis_url() -> String { std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()) }
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}_{}_{}_{:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
}
