//! The Redis state store: the only source of truth for instances and their configuration.
//!
//! Records are hashes `{data: <json>, version: <n>}`. Writes are optimistic: read, change a
//! copy, then one Lua script checks every version read and writes every changed record, or
//! writes nothing. A lost race is retried; a client's `If-Match` is checked against the
//! versions it read. Nothing is cached, so every API replica sees every change at once.

pub mod history;
pub mod keys;
pub(crate) mod scripts;

use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::drasi::DrasiConfig;
use crate::ids::{InstanceId, InstanceName};
use crate::model::{InstanceRecord, ObservedRecord, ProbeRecord};
pub use keys::Keys;

/// Something went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, or did not answer in time.
    #[error("state store unavailable: {0}")]
    Unavailable(redis::RedisError),
    /// Redis answered with an error: a bug on our side, not an outage.
    #[error("state store error: {0}")]
    Redis(redis::RedisError),
    /// A record could not be decoded.
    #[error("corrupt record at {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The name belongs to another instance.
    #[error("name is already taken")]
    NameTaken,
    /// Concurrent writers kept winning the race.
    #[error("too many concurrent updates")]
    Contended,
    /// The instance does not exist.
    #[error("instance not found")]
    NotFound,
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

/// A record and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Everything stored about one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    pub instance: Versioned<InstanceRecord>,
    pub config: Versioned<DrasiConfig>,
    /// Absent until a worker observes the instance.
    pub observed: Option<Versioned<ObservedRecord>>,
    /// The last health probe, once the reconciler probed it.
    pub probe: Option<ProbeRecord>,
}

/// Handle to the shared Redis state store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Keys,
    caps: history::HistoryCaps,
}

const MAX_RETRIES: usize = 16;

impl Store {
    /// A store on `url` under `prefix`. Connects lazily, so a process can start while Redis is
    /// down and report itself not ready; reconnects by itself.
    pub fn open(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let caps = history::HistoryCaps { per_instance: 100, global: 1000 };
        Ok(Self { conn, keys: Keys::new(prefix), caps })
    }

    /// A store configured by `settings` (prefix, history caps).
    pub fn from_settings(url: &SecretString, settings: &crate::settings::Settings) -> Result<Self, StoreError> {
        let caps = history::HistoryCaps {
            per_instance: settings.reconcile.history_per_instance.max(1),
            global: settings.reconcile.history_global.max(1),
        };
        Ok(Self::open(url, &settings.key_prefix)?.with_history_caps(caps))
    }

    /// Keep at most `caps` transitions per instance and globally.
    pub fn with_history_caps(mut self, caps: history::HistoryCaps) -> Self {
        self.caps = caps;
        self
    }

    /// The key schema.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection for modules that add their own records (operations, leases, ...).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Does Redis answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Store a new instance and its configuration; fails with `NameTaken` when the name is used.
    pub async fn create_instance(&self, instance: &InstanceRecord, config: &DrasiConfig) -> Result<(), StoreError> {
        let id = &instance.id;
        let outcome: String = scripts::create()
            .key(self.keys.names())
            .key(self.keys.instances())
            .key(self.keys.instance(id))
            .key(self.keys.config(id))
            .arg(instance.name.as_str())
            .arg(id.as_str())
            .arg(to_json(instance))
            .arg(to_json(config))
            .invoke_async(&mut self.conn.clone())
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(StoreError::NameTaken),
        }
    }

    /// Read everything about an instance in one round trip.
    pub async fn load(&self, id: &InstanceId) -> Result<Option<InstanceState>, StoreError> {
        let mut states = self.load_many(std::slice::from_ref(id)).await?;
        Ok(states.pop().flatten())
    }

    /// Read many instances in one pipelined round trip; `None` for ids that do not exist.
    pub async fn load_many(&self, ids: &[InstanceId]) -> Result<Vec<Option<InstanceState>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(self.keys.instance(id), &["data", "version"])
                .hmget(self.keys.config(id), &["data", "version"])
                .hmget(self.keys.observed(id), &["data", "version"])
                .hmget(self.keys.probe(id), &["data", "version"]);
        }
        type Raw = (Option<String>, Option<u64>);
        let raw: Vec<Raw> = pipe.query_async(&mut self.conn.clone()).await?;
        ids.iter()
            .zip(raw.chunks(4))
            .map(|(id, r)| {
                let instance = decode(&self.keys.instance(id), &r[0])?;
                let config = decode(&self.keys.config(id), &r[1])?;
                let observed = decode(&self.keys.observed(id), &r[2])?;
                let probe = decode::<ProbeRecord>(&self.keys.probe(id), &r[3]).ok().flatten().map(|v| v.value);
                Ok(match (instance, config) {
                    (Some(instance), Some(config)) => Some(InstanceState { instance, config, observed, probe }),
                    _ => None,
                })
            })
            .collect()
    }

    /// The id owning `name`, if any.
    pub async fn id_by_name(&self, name: &InstanceName) -> Result<Option<InstanceId>, StoreError> {
        let id: Option<String> = self.conn.clone().hget(self.keys.names(), name.as_str()).await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// Ids of the nodes whose heartbeat is current.
    pub async fn live_nodes(&self) -> Result<Vec<String>, StoreError> {
        let nodes: Vec<String> = self.conn.clone().smembers(self.keys.nodes()).await?;
        let mut live = Vec::new();
        for n in nodes {
            if self.conn.clone().exists(self.keys.node(&n)).await? {
                live.push(n);
            }
        }
        Ok(live)
    }

    /// Instance ids after `cursor` in creation order, at most `count`.
    pub async fn ids_after(&self, cursor: Option<&InstanceId>, count: usize) -> Result<Vec<InstanceId>, StoreError> {
        let min = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let ids: Vec<String> =
            self.conn.clone().zrangebylex_limit(self.keys.instances(), min, "+", 0, count as isize).await?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Change an instance: `change` edits a copy of what was read (and may refuse); the
    /// result is written only if nobody wrote in between, otherwise it is read and tried again.
    /// The generation goes up when the desired state, the runtime options or the configuration
    /// changed.
    pub async fn update<T, E, F>(&self, id: &InstanceId, mut change: F) -> Result<(InstanceState, T), E>
    where
        E: From<StoreError>,
        F: FnMut(&mut InstanceState) -> Result<T, E>,
    {
        for _ in 0..MAX_RETRIES {
            let before = self.load(id).await?.ok_or(StoreError::NotFound)?;
            let mut after = before.clone();
            let out = change(&mut after)?;
            let config_changed = after.config.value != before.config.value;
            let desired_changed = after.instance.value.desired_state != before.instance.value.desired_state
                || after.instance.value.runtime != before.instance.value.runtime;
            if config_changed || desired_changed {
                after.instance.value.generation = before.instance.value.generation + 1;
            }
            let instance_changed = after.instance.value != before.instance.value;
            if instance_changed {
                after.instance.value.updated_at = Utc::now();
            }
            if !instance_changed && !config_changed {
                return Ok((after, out));
            }
            match self.cas(&before, &after, instance_changed, config_changed).await? {
                Some((iv, cv)) => {
                    after.instance.version = iv;
                    after.config.version = cv;
                    return Ok((after, out));
                }
                None => continue,
            }
        }
        Err(StoreError::Contended.into())
    }

    /// Write `after` if both records are still at the versions of `before`. Returns the new
    /// versions, or `None` when another writer got there first.
    async fn cas(
        &self,
        before: &InstanceState,
        after: &InstanceState,
        instance_changed: bool,
        config_changed: bool,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let id = &before.instance.value.id;
        let mut inv = scripts::cas().prepare_invoke();
        inv.key(self.keys.instance(id)).key(self.keys.config(id));
        inv.arg(2)
            .arg(before.instance.version)
            .arg(if instance_changed { to_json(&after.instance.value) } else { String::new() })
            .arg(before.config.version)
            .arg(if config_changed { to_json(&after.config.value) } else { String::new() });
        let (old, new) = (&before.instance.value.name, &after.instance.value.name);
        if old != new {
            inv.key(self.keys.names()).arg(old.as_str()).arg(new.as_str()).arg(id.as_str());
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.conn.clone()).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let v = |i: usize| reply.get(i).and_then(|s| s.parse().ok()).unwrap_or_default();
                Ok(Some((v(1), v(2))))
            }
            Some("name_taken") => Err(StoreError::NameTaken),
            _ => Ok(None),
        }
    }

    /// Remove every record of an instance (its operations expire on their own).
    pub async fn delete_instance(&self, id: &InstanceId) -> Result<(), StoreError> {
        let _: i32 = scripts::delete()
            .key(self.keys.names())
            .key(self.keys.instances())
            .key(self.keys.instance(id))
            .key(self.keys.config(id))
            .key(self.keys.observed(id))
            .key(self.keys.fence(id))
            .key(self.keys.history(id))
            .key(self.keys.crash_loop(id))
            .key(self.keys.probe(id))
            .arg(id.as_str())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serialising our own plain data types to JSON cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(
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
