//! How many streams (query watches, followed logs, `/events`) run: at most `api.max_streams`
//! on this replica (a semaphore), and at most a token's `max_streams` quota on all replicas
//! together (held in the store, each stream renewing its hold while it runs, so the streams
//! of a replica that died lapse within [`HOLD`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use draas_jobs::store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::ApiError;

/// When to ask a client refused a stream to try again.
const RETRY_SECS: u64 = 5;
/// How long a stream's hold on its token's quota lasts unless renewed (every third of it).
const HOLD: Duration = Duration::from_secs(30);

/// The streams this replica serves.
#[derive(Clone)]
pub struct Streams {
    all: Arc<Semaphore>,
    max: usize,
    store: Store,
}

/// One running stream, counted until dropped.
pub struct StreamPermit {
    _all: OwnedSemaphorePermit,
    _held: Option<Held>,
}

/// A stream's hold on its token's quota, renewed while it lives.
struct Held {
    store: Store,
    token: Arc<str>,
    id: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Streams {
    /// At most `max` streams at once on this replica.
    pub fn new(max: usize, store: Store) -> Self {
        Self { all: Arc::new(Semaphore::new(max)), max, store }
    }

    /// A permit for one more stream of `caller`; 429 `too_many_streams` when this replica or
    /// the caller's token has as many as it may.
    pub async fn permit(&self, caller: &Caller) -> Result<StreamPermit, ApiError> {
        let refused = |message: String| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message).retry_after(RETRY_SECS)
        };
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(format!("this API replica serves {} streams already; retry later", self.max)))?;
        let Some(max) = caller.quota.max_streams else { return Ok(StreamPermit { _all: all, _held: None }) };
        let id = ulid::Ulid::new().to_string();
        if let Err(held) = self.store.quotas().hold_stream(&caller.name, &id, Some(max), HOLD).await? {
            return Err(refused(format!(
                "token '{}' holds {held} streams, its quota (quotas.max_streams) on all API replicas; close one or retry later",
                caller.name
            )));
        }
        let (store, token) = (self.store.clone(), caller.name.clone());
        let renewal = tokio::spawn({
            let (store, token, id) = (store.clone(), token.clone(), id.clone());
            async move {
                loop {
                    tokio::time::sleep(HOLD / 3).await;
                    if let Err(e) = store.quotas().renew_stream(&token, &id, HOLD).await {
                        tracing::debug!(error = %e, "a stream's hold was not renewed; it lapses unless a renewal gets through");
                    }
                }
            }
        });
        Ok(StreamPermit { _all: all, _held: Some(Held { store, token, id, renewal }) })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        let (store, token, id) = (self.store.clone(), self.token.clone(), std::mem::take(&mut self.id));
        // Let go at once; when it cannot (no runtime, Redis away) the hold lapses by itself.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.quotas().release_stream(&token, &id).await;
            });
        }
    }
}
