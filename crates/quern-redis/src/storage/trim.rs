//! Trimming: acknowledged entries removed from the head of the stream.

use crate::error::StorageError;
use crate::keys::{GROUP, QueueKeys, entry_ms};
use crate::scripts;

use super::Storage;

/// What one [`Storage::trim_acked`] did and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrimReport {
    /// Acknowledged entries removed.
    pub trimmed: u64,
    /// The oldest entry leased to a consumer and not yet acknowledged, if any: nothing at or
    /// after it can be trimmed yet.
    pub oldest_leased: Option<String>,
    /// The last entry handed to Quern's consumer group, if any.
    pub last_delivered: Option<String>,
}

impl TrimReport {
    /// How far, in ms of entry time, the oldest leased entry lags behind the last delivered
    /// one: the acknowledged entries between them cannot be trimmed until it settles.
    pub fn held_back_ms(&self) -> u64 {
        match (&self.oldest_leased, &self.last_delivered) {
            (Some(oldest), Some(last)) => entry_ms(last).saturating_sub(entry_ms(oldest)),
            _ => 0,
        }
    }
}

impl Storage {
    /// Deletes the acknowledged entries at the head of the queue's stream: everything below the
    /// oldest entry some consumer group still holds or has not read. Nothing leased or waiting is
    /// ever removed.
    pub async fn trim_acked(&self, keys: &QueueKeys) -> Result<TrimReport, StorageError> {
        let (trimmed, oldest, last, _, _) = self.trim_script(keys, false, false).await?;
        Ok(TrimReport {
            trimmed,
            oldest_leased: (!oldest.is_empty()).then_some(oldest),
            last_delivered: (!last.is_empty()).then_some(last),
        })
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
