//! Trimming: acknowledged entries removed from the head of the stream.

use quern_core::TrimReport;

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys, entry_ms};
use crate::scripts;

use super::Storage;

impl Storage {
    /// Deletes the acknowledged entries at the head of the queue's stream: everything below the
    /// oldest entry some consumer group still holds or has not read. Nothing leased or waiting is
    /// ever removed. The report says how far, in ms of entry time, the oldest leased entry lags
    /// behind the last delivered one: the acknowledged entries between them wait for it.
    pub async fn trim_acked(&self, keys: &QueueKeys) -> Result<TrimReport, StorageError> {
        let (trimmed, oldest, last, _, _) = self.trim_script(keys, false, false).await?;
        let mut report = TrimReport::default();
        report.trimmed = trimmed;
        report.held_back_ms = if oldest.is_empty() || last.is_empty() {
            0
        } else {
            entry_ms(&last).saturating_sub(entry_ms(&oldest))
        };
        report.oldest_leased = (!oldest.is_empty()).then_some(oldest);
        report.last_delivered = (!last.is_empty()).then_some(last);
        Ok(report)
    }

    /// Entries waiting for Quern's group, counted the way Redis 6.2 (no `lag` field) must; `None`
    /// when over 10,000 acknowledged entries are held back. For tests of that path.
    #[doc(hidden)]
    pub async fn waiting_without_lag(&self, keys: &QueueKeys) -> Result<Option<u64>, StorageError> {
        let (_, _, _, waiting, _) = self.trim_script(keys, true, true).await?;
        Ok(u64::try_from(waiting).ok())
    }

    /// Runs `trim_acked.lua`: (trimmed, oldest pending id, last-delivered id, waiting, running).
    pub(super) async fn trim_script(
        &self,
        keys: &QueueKeys,
        count_waiting: bool,
        without_lag: bool,
    ) -> Result<(u64, String, String, i64, u64), StorageError> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let reply: Result<(u64, String, String, i64, u64), _> = scripts::TRIM_ACKED
            .key(&keys.stream)
            .arg(GROUP)
            .arg(flag(count_waiting))
            .arg(flag(without_lag))
            .invoke_async(&mut self.conn())
            .await;
        reply.map_err(StorageError::redis("trimming acknowledged jobs"))
    }
}
