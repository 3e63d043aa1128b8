//! Backing off while Redis is unreachable: log once per failure with the redacted URL, wait
//! longer each time (100 ms doubling to 5 s), never exit, never spin.

use std::time::Duration;

pub(crate) struct Reconnect {
    url: String,
    what: &'static str,
    delay: Duration,
    failures: u32,
}

impl Reconnect {
    /// `broker` is the broker's description for logs (password redacted).
    pub(crate) fn new(broker: String, what: &'static str) -> Self {
        Self {
            url: broker,
            what,
            delay: Duration::from_millis(100),
            failures: 0,
        }
    }

    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(broker = %self.url, task = self.what, after_failures = self.failures, "Redis is reachable again");
        }
        self.failures = 0;
        self.delay = Duration::from_millis(100);
    }

    pub(crate) async fn failed(&mut self, e: &(dyn std::error::Error + Send + Sync + 'static)) {
        self.failures += 1;
        tracing::warn!(broker = %self.url, task = self.what, attempt = self.failures,
            retry_in_ms = self.delay.as_millis() as u64, error = %quern_core::ErrorChain::of(e),
            "Redis command failed; retrying");
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
    }
}
