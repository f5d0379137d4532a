//! Housekeeping nothing else does: apalis-redis keeps every finished task forever
//! (apalis-redis#10), and the operation indexes keep ids whose records expired.

use std::time::Duration;

use crate::store::{Store, StoreError};

/// How long finished apalis tasks are kept (tick ids must outlive every replica's clock skew).
pub const TASK_RETENTION: Duration = Duration::from_secs(3600);

/// Forget finished tasks of every queue of the deployment older than [`TASK_RETENTION`], and
/// expired operation ids. Returns how many entries went.
pub async fn sweep(store: &Store) -> Result<u64, StoreError> {
    store.queues().sweep(&super::all(store).await?, TASK_RETENTION).await
}
