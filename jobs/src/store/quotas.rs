//! What each token used of its operations quota: a counter per token and clock minute,
//! expiring with it. (Its instances are a set kept by the create and delete scripts of
//! `instances`, which check the quota where they write.)

use chrono::Utc;

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
}
