//! A worker that leaves by itself once idle (`worker.exit_when_idle_secs`), for hosts that run
//! a worker to completion (a serverless job, a scaled-to-zero pod). Leaving goes through the
//! same graceful stop as SIGTERM: nothing runs at that moment, and a job fetched but not yet
//! begun goes back to its queue, so no job is lost and none runs twice. A worker whose host
//! runs drasi-servers of its deployment (process instances) stays: it supervises them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether the worker's handlers run a job, and since when none has.
#[derive(Debug)]
pub struct Activity {
    running: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { running: AtomicUsize::new(0), last: Mutex::new(Instant::now()) }
    }
}

/// A job being handled; its end is the worker's latest activity (unless it is housekeeping).
pub struct Busy<'a>(&'a Activity, bool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.stamp();
        }
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    /// A job begins; the worker is busy until the guard drops.
    pub fn begin(&self) -> Busy<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.stamp();
        Busy(self, true)
    }

    /// Housekeeping begins (a reconcile pass): the worker does not leave while it runs, but it
    /// does not count as activity, so passes alone never keep an idle worker up.
    pub fn housekeeping(&self) -> Busy<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        Busy(self, false)
    }

    /// How long no job has run (`None` while one runs).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.running.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.last.lock().map(|t| t.elapsed()).unwrap_or_default())
    }

    fn stamp(&self) {
        if let Ok(mut t) = self.last.lock() {
            *t = Instant::now();
        }
    }
}

/// Resolves once no job has run for `limit` and `hosting()` says this worker supervises
/// nothing on its host (never when `limit` is zero).
pub async fn exhausted(activity: Arc<Activity>, limit: Duration, hosting: impl Fn() -> bool) {
    if limit.is_zero() {
        return std::future::pending().await;
    }
    let check = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut said = false;
    loop {
        if activity.idle_for().is_some_and(|idle| idle >= limit) {
            if !hosting() {
                tracing::info!(
                    idle_secs = limit.as_secs(),
                    "no job for the idle limit; stopping (worker.exit_when_idle_secs)"
                );
                return;
            }
            if !said {
                tracing::info!(
                    "idle, but drasi-servers of this deployment run on this host; staying to supervise them"
                );
                said = true;
            }
        }
        tokio::time::sleep(check).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_running_a_job_is_never_idle_and_becomes_idle_when_it_ends() {
        let a = Activity::default();
        let busy = a.begin();
        assert_eq!(a.idle_for(), None);
        drop(busy);
        assert!(a.idle_for().is_some_and(|d| d < Duration::from_secs(1)));
    }
}
