//! The Redis state store: the only source of truth, and the only code that sends Redis commands.
//!
//! One [`Store`] owns the connection, the key schema, the TTLs and caps, and hands out typed
//! views: [`instances`](Store::instances), [`operations`](Store::operations),
//! [`deliveries`](Store::deliveries),
//! [`leases`](Store::leases), [`ports`](Store::ports), [`nodes`](Store::nodes),
//! [`crash_loops`](Store::crash_loops), [`history`](Store::history),
//! [`queues`](Store::queues), [`passes`](Store::passes), [`plugins`](Store::plugins),
//! [`logs`](Store::logs), [`secrets`](Store::secrets), [`quotas`](Store::quotas) and
//! [`events`](Store::events).
//! Every multi-key write is one Lua script (`scripts`), so a state transition is one round
//! trip and all or nothing. Nothing is cached: every replica sees every change at once.

pub mod crashloops;
pub mod deliveries;
pub mod events;
pub mod history;
pub mod instances;
pub mod keys;
pub mod leases;
pub mod logs;
pub mod nodes;
pub mod operations;
pub mod passes;
pub mod plugins;
pub mod ports;
pub mod queues;
pub mod quotas;
pub(crate) mod scripts;
pub mod secrets;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::model::Versioned;
pub use keys::{Keys, QueueKeys};

/// Something went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, or did not answer in time.
    #[error("state store unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis answered with an error: a bug on our side, not an outage.
    #[error("state store error: {0}")]
    Redis(#[source] redis::RedisError),
    /// A record could not be decoded.
    #[error("corrupt record at {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A script answered something this version does not understand.
    #[error("unexpected answer from the store: {0}")]
    Protocol(String),
    /// The name belongs to another instance.
    #[error("name is already taken")]
    NameTaken,
    /// Concurrent writers kept winning the race.
    #[error("too many concurrent updates")]
    Contended,
    /// The instance does not exist.
    #[error("instance not found")]
    NotFound,
    /// The token that asks has as many instances as its quota allows.
    #[error("token '{token}' has {count} instances, its quota (quotas.max_instances); delete one first")]
    OverQuota { token: String, count: u64 },
}

impl StoreError {
    /// Is this an outage (retry later) rather than a fault?
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        // Besides lost connections: a Redis that is restarting answers LOADING (WaitAndRetry)
        // until it has read its AOF; that is an outage too, not a fault of the request.
        let transient = matches!(
            e.retry_method(),
            redis::RetryMethod::WaitAndRetry
                | redis::RetryMethod::Reconnect
                | redis::RetryMethod::ReconnectFromInitialConnections
        );
        if transient || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            StoreError::Unavailable(e)
        } else {
            StoreError::Redis(e)
        }
    }
}

/// How long records live and how many are kept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Status transitions kept per instance.
    pub history_per_instance: usize,
    /// Status transitions kept in the global buffer.
    pub history_global: usize,
    /// How long an operation is kept after its last change.
    pub operation_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { history_per_instance: 100, history_global: 1000, operation_ttl: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Handle to the shared Redis state store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    limits: Limits,
    events: OnceLock<events::Events>,
    /// Requests sent through the views (a pipeline or a script is one): the bench prints them.
    round_trips: AtomicU64,
}

impl Store {
    /// A store on `url` under `prefix`. Connects lazily, so a process can start while Redis is
    /// down and report itself not ready; reconnects by itself.
    pub fn open(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        Self::with_limits(url, prefix, Limits::default())
    }

    /// A store configured by `settings` (prefix, history caps, operation TTL).
    pub fn from_settings(url: &SecretString, settings: &crate::settings::Settings) -> Result<Self, StoreError> {
        let limits = Limits {
            history_per_instance: settings.reconcile.history_per_instance.max(1),
            history_global: settings.reconcile.history_global.max(1),
            operation_ttl: Duration::from_secs(settings.operations.ttl_secs.max(1)),
        };
        Self::with_limits(url, &settings.key_prefix, limits)
    }

    fn with_limits(url: &SecretString, prefix: &str, limits: Limits) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let inner = Inner {
            client,
            conn,
            keys: Keys::new(prefix),
            limits,
            events: OnceLock::new(),
            round_trips: AtomicU64::new(0),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The key schema.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The store's limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The connection, for apalis-redis' worker backends (which send their own commands).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The connection for one request (every view asks for one per request it sends).
    fn conn(&self) -> ConnectionManager {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        self.inner.conn.clone()
    }

    /// Requests this store sent so far (apalis' own fetches and acknowledgements excluded).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Does Redis answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// This deployment's id: unique per Redis and key prefix, made on first use (`SET NX`, so
    /// every process of the deployment agrees) and kept. Every server draas starts carries it,
    /// and a worker only ever stops, adopts or kills servers that carry its own: two
    /// deployments that share a host, an engine or a namespace (both called `draas` by their
    /// prefix) keep apart.
    pub async fn deployment_id(&self) -> Result<String, StoreError> {
        let key = self.keys().deployment();
        let made = crate::domain::ids::new_ulid_string();
        let (id,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&made)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        Ok(id)
    }

    /// Instances: desired side, configuration, observed side, probes.
    pub fn instances(&self) -> instances::Instances<'_> {
        instances::Instances { store: self }
    }

    /// The lifecycle queues as draas' apalis workers take from them.
    pub fn deliveries(&self) -> deliveries::Deliveries<'_> {
        deliveries::Deliveries { store: self }
    }

    /// Operations: submit, begin, finish, read, list.
    pub fn operations(&self) -> operations::Operations<'_> {
        operations::Operations { store: self }
    }

    /// Leases on instances and locks on passes.
    pub fn leases(&self) -> leases::Leases<'_> {
        leases::Leases { store: self }
    }

    /// Port pools.
    pub fn ports(&self) -> ports::Ports<'_> {
        ports::Ports { store: self }
    }

    /// Node heartbeats.
    pub fn nodes(&self) -> nodes::Nodes<'_> {
        nodes::Nodes { store: self }
    }

    /// Crash-loop bookkeeping.
    pub fn crash_loops(&self) -> crashloops::CrashLoops<'_> {
        crashloops::CrashLoops { store: self }
    }

    /// Status transitions, per instance and global.
    pub fn history(&self) -> history::History<'_> {
        history::History { store: self }
    }

    /// apalis-redis queues: pushes, depths, sweeping.
    pub fn queues(&self) -> queues::Queues<'_> {
        queues::Queues { store: self }
    }

    /// The servers' output, as workers ship it.
    pub fn logs(&self) -> logs::Logs<'_> {
        logs::Logs { store: self }
    }

    /// The instances' secrets, sealed.
    pub fn secrets(&self) -> secrets::Secrets<'_> {
        secrets::Secrets { store: self }
    }

    /// Plugin catalogs published by workers.
    pub fn plugins(&self) -> plugins::Plugins<'_> {
        plugins::Plugins { store: self }
    }

    /// What each token used of its quotas.
    pub fn quotas(&self) -> quotas::Quotas<'_> {
        quotas::Quotas { store: self }
    }

    /// Reconcile passes: counters, claims of reported deaths, instance counts.
    pub fn passes(&self) -> passes::Passes<'_> {
        passes::Passes { store: self }
    }

    /// Notifications of this deployment (pub/sub), subscribed to on first use.
    pub fn events(&self) -> &events::Events {
        self.inner.events.get_or_init(|| events::Events::start(self.inner.client.clone(), self.keys().events()))
    }
}

/// JSON of one of our own plain data types (which cannot fail to serialise).
pub(crate) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Decode a `{data, version}` pair read from `key`.
pub(crate) fn decode<T: DeserializeOwned>(
    key: &str,
    raw: &(Option<String>, Option<u64>),
) -> Result<Option<Versioned<T>>, StoreError> {
    match raw {
        (Some(data), version) => serde_json::from_str(data)
            .map(|value| Some(Versioned { value, version: version.unwrap_or_default() }))
            .map_err(|source| StoreError::Corrupt { key: key.to_owned(), source }),
        (None, _) => Ok(None),
    }
}
