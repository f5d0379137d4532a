//! What each token used of its quotas: operations, a counter per token and clock minute,
//! expiring with it; streams, a sorted set per token of the streams it holds on every API
//! replica with their expiry, renewed while each runs. (Its instances are a set kept by the
//! create and delete scripts of `instances`, which check the quota where they write.)

use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands;

use super::{Store, StoreError, scripts};

/// A token's use of its quotas.
pub struct Quotas<'a> {
    pub(super) store: &'a Store,
}

impl Quotas<'_> {
    /// Count one more operation of `token` this minute; `Some(seconds)` until the minute ends
    /// when it would be more than `per_minute` (it is counted all the same).
    pub async fn take_op(&self, token: &str, per_minute: u64) -> Result<Option<u64>, StoreError> {
        let now = Utc::now().timestamp();
        let (minute, left) = (now.div_euclid(60), 60 - now.rem_euclid(60));
        let count: u64 = scripts::count_op()
            .key(self.store.keys().ops_window(token, minute))
            .arg(left + 5)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok((count > per_minute).then_some(left.unsigned_abs()))
    }

    /// Hold stream `stream` of `token` for `ttl` unless it holds `max` already; `Err(held)`
    /// then.
    pub async fn hold_stream(
        &self,
        token: &str,
        stream: &str,
        max: Option<usize>,
        ttl: Duration,
    ) -> Result<Result<(), u64>, StoreError> {
        let now = Utc::now().timestamp_millis();
        let held: u64 = scripts::hold_stream()
            .key(self.store.keys().streams_of(token))
            .arg(stream)
            .arg(now)
            .arg(now + ttl_ms(ttl))
            .arg(max.map(|m| m.to_string()).unwrap_or_default())
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(if held == 0 { Ok(()) } else { Err(held) })
    }

    /// Keep holding stream `stream` of `token` for `ttl` more; whether it was still held.
    pub async fn renew_stream(&self, token: &str, stream: &str, ttl: Duration) -> Result<bool, StoreError> {
        let renewed: i32 = scripts::renew_stream()
            .key(self.store.keys().streams_of(token))
            .arg(stream)
            .arg(Utc::now().timestamp_millis() + ttl_ms(ttl))
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(renewed == 1)
    }

    /// Let go of stream `stream` of `token`.
    pub async fn release_stream(&self, token: &str, stream: &str) -> Result<(), StoreError> {
        let _: i64 = self.store.conn().zrem(self.store.keys().streams_of(token), stream).await?;
        Ok(())
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}
