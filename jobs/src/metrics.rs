//! Prometheus metrics of one draas process (API, worker, or both in `draas up`): one registry
//! per process, rendered in the OpenMetrics text format at `/metrics`. Gauges that describe the
//! shared state (queue depths, instances by platform and status) are read from Redis at scrape
//! time, so every replica reports the same figures for them.

use std::sync::OnceLock;
use std::time::Duration;

use crate::store::{Store, StoreError};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of a series.
pub type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of this process.
pub struct Metrics {
    registry: Registry,
    http: Histograms,
    jobs: Family<Labels, Counter>,
    job_duration: Histograms,
    pickup: Histograms,
    reconcile: Histograms,
    queue_depth: Family<Labels, Gauge>,
    instances: Family<Labels, Gauge>,
    corrupt_records: Counter,
}

fn seconds() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("draas");
        let http = Histograms::new_with_constructor(seconds);
        let jobs = Family::<Labels, Counter>::default();
        let job_duration = Histograms::new_with_constructor(seconds);
        let pickup = Histograms::new_with_constructor(seconds);
        let reconcile = Histograms::new_with_constructor(seconds);
        let queue_depth = Family::<Labels, Gauge>::default();
        let instances = Family::<Labels, Gauge>::default();
        registry.register("http_request_duration_seconds", "HTTP requests by route, method and status", http.clone());
        registry.register("jobs", "Lifecycle job attempts by kind and outcome", jobs.clone());
        registry.register("job_duration_seconds", "Duration of a job attempt, by kind", job_duration.clone());
        registry.register(
            "job_pickup_seconds",
            "From submit to the first attempt of a job (queue wait), by kind",
            pickup.clone(),
        );
        registry.register("reconcile_pass_duration_seconds", "Reconcile passes by scope", reconcile.clone());
        registry.register("queue_depth", "Jobs waiting or scheduled, by queue", queue_depth.clone());
        registry.register("instances", "Instances by platform and observed status", instances.clone());
        let corrupt_records = Counter::default();
        registry.register(
            "corrupt_records",
            "Reads that met a record which could not be decoded (skipped, not failed)",
            corrupt_records.clone(),
        );
        Self { registry, http, jobs, job_duration, pickup, reconcile, queue_depth, instances, corrupt_records }
    }

    /// One HTTP request (`route` is the matched route template, never the raw path).
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let labels = vec![("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// One job attempt ended with `outcome` (`succeeded`, `failed`, `retry`, `superseded`, ...).
    pub fn job(&self, kind: &str, outcome: &str, took: Duration) {
        self.jobs.get_or_create(&vec![("kind", kind.to_owned()), ("outcome", outcome.to_owned())]).inc();
        self.job_duration.get_or_create(&vec![("kind", kind.to_owned())]).observe(took.as_secs_f64());
    }

    /// A job was picked up `waited` after it was submitted.
    pub fn pickup(&self, kind: &str, waited: Duration) {
        self.pickup.get_or_create(&vec![("kind", kind.to_owned())]).observe(waited.as_secs_f64());
    }

    /// A reconcile pass of `scope` (`node` or `global`) took `took`.
    pub fn reconcile_pass(&self, scope: &str, took: Duration) {
        self.reconcile.get_or_create(&vec![("scope", scope.to_owned())]).observe(took.as_secs_f64());
    }

    /// A read met a record it could not decode.
    pub fn corrupt_record(&self) {
        self.corrupt_records.inc();
    }

    /// Refresh the shared-state gauges from Redis.
    async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        for q in crate::queue::depths(store).await? {
            let depth = i64::try_from(q.waiting + q.scheduled).unwrap_or(i64::MAX);
            self.queue_depth.get_or_create(&vec![("queue", q.name)]).set(depth);
        }
        let counts = store.passes().counts().await?;
        self.instances.clear();
        for (field, n) in counts {
            if let Some((platform, status)) = field.split_once('|') {
                self.instances
                    .get_or_create(&vec![("platform", platform.to_owned()), ("status", status.to_owned())])
                    .set(n);
            }
        }
        Ok(())
    }
}

/// The metrics text; the shared-state gauges keep their last values when Redis is out.
pub async fn render(store: &Store) -> String {
    let m = metrics();
    if let Err(e) = m.refresh(store).await {
        tracing::warn!(error = %e, "metrics: could not read queue depths and instance counts");
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &m.registry) {
        tracing::warn!(error = %e, "metrics: encoding failed");
    }
    out
}
