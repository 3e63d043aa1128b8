//! Promotes delayed jobs and retries to the queue when they are due: sleeps until the next due
//! time, and is woken early when a new one is scheduled (a token on the queue's wake list).

use std::sync::Arc;
use std::time::Duration;

use quern_core::Shutdown;
use quern_redis::{QueueKeys, Storage};
use tokio::sync::Notify;

use crate::backoff::Reconnect;

/// Longest sleep between two checks, in case a wake token went to another worker that died.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(crate) async fn promote(storage: Storage, keys: QueueKeys, woken: Arc<Notify>, stop: Shutdown) {
    let mut reconnect = Reconnect::new(&storage, "promoting due jobs");
    loop {
        let sleep = match storage.promote_due(&keys).await {
            Ok((_, next)) => {
                reconnect.succeeded();
                match next {
                    Some(due) => Duration::from_millis(due.saturating_sub(quern_core::envelope::now_ms()))
                        .min(MAX_SLEEP),
                    None => MAX_SLEEP,
                }
            }
            Err(e) => {
                reconnect.failed(&e).await;
                continue;
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = woken.notified() => {}
            _ = stop.wait() => return,
        }
    }
}

/// Blocks on the queue's wake list (its own connection) and wakes the promoter.
pub(crate) async fn listen(storage: Storage, keys: QueueKeys, woken: Arc<Notify>) {
    let mut reconnect = Reconnect::new(&storage, "waiting for scheduled jobs");
    let mut conn = loop {
        match storage.dedicated(MAX_SLEEP).await {
            Ok(c) => break c,
            Err(e) => reconnect.failed(&e).await,
        }
    };
    loop {
        match storage.wait_wake(&mut conn, &keys, MAX_SLEEP).await {
            Ok(true) => woken.notify_one(),
            Ok(false) => reconnect.succeeded(),
            Err(e) => reconnect.failed(&e).await,
        }
    }
}
