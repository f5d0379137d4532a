//! How many streams (query watches, followed logs, `/events`) run: at most `api.max_streams`
//! on this replica, and at most a token's `max_streams` quota per token on this replica (an
//! in-memory count: each API replica counts its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::ApiError;

/// When to ask a client refused a stream to try again.
const RETRY_SECS: u64 = 5;

/// The streams this replica serves.
#[derive(Clone)]
pub struct Streams {
    all: Arc<Semaphore>,
    max: usize,
    per_token: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One running stream, counted until dropped.
pub struct StreamPermit {
    _all: OwnedSemaphorePermit,
    token: Arc<str>,
    per_token: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl Streams {
    /// At most `max` streams at once.
    pub fn new(max: usize) -> Self {
        Self { all: Arc::new(Semaphore::new(max)), max, per_token: Arc::default() }
    }

    /// A permit for one more stream of `caller`; 429 `too_many_streams` when this replica or
    /// the caller's token has as many as it may.
    pub fn permit(&self, caller: &Caller) -> Result<StreamPermit, ApiError> {
        let refused = |message: String| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message).retry_after(RETRY_SECS)
        };
        let mut counts = self.per_token.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.get(&caller.name).copied().unwrap_or(0);
        if let Some(max) = caller.quota.max_streams
            && held >= max
        {
            return Err(refused(format!(
                "token '{}' holds {held} streams on this API replica, its quota (quotas.max_streams); close one or retry later",
                caller.name
            )));
        }
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(format!("this API replica serves {} streams already; retry later", self.max)))?;
        counts.insert(caller.name.clone(), held + 1);
        Ok(StreamPermit { _all: all, token: caller.name.clone(), per_token: self.per_token.clone() })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.per_token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.token);
            }
        }
    }
}
