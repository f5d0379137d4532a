//! Instances: the desired side (`InstanceRecord`, written by the API), the configuration, the
//! observed side (`ObservedRecord`, written by workers) and the last probe.
//!
//! Records are hashes `{data: <json>, version: <n>}`. Writes are optimistic: read, change a
//! copy, then one script checks every version read and writes every changed record, or
//! writes nothing. A lost race is retried; a client's `If-Match` is checked against the
//! versions it read.

use chrono::Utc;
use redis::AsyncCommands;
use serde_json::Value;

use super::{Store, StoreError, decode, scripts, to_json};
use crate::domain::config::DrasiConfig;
use crate::domain::ids::{InstanceId, InstanceName};
use crate::domain::model::{Cause, InstanceRecord, InstanceState, ObservedRecord, Platform, ProbeRecord, Versioned};
use crate::domain::secrets::SecretName;
use crate::vault::Sealed;

const MAX_RETRIES: usize = 16;

/// The parts of an instance record an operation changes (hash field, JSON key): kept beside
/// the record's JSON, so the submit script moves them without re-encoding the record.
const LIVE: [(&str, &str); 3] = [("desired", "desiredState"), ("generation", "generation"), ("updatedAt", "updatedAt")];

/// The hash fields of an instance record: `data` (the JSON of what operations do not change)
/// and the live fields.
pub(super) fn instance_fields(r: &InstanceRecord) -> Vec<(&'static str, String)> {
    let mut doc = serde_json::to_value(r).unwrap_or_default();
    let mut fields = Vec::with_capacity(LIVE.len() + 2);
    for (field, key) in LIVE {
        let v = doc.as_object_mut().and_then(|o| o.remove(key)).unwrap_or_default();
        fields.push((field, v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
    }
    // The platform stays in the JSON too (it never changes): a field of its own spares the
    // submit script decoding the record to choose a queue.
    fields.push(("platform", r.platform.as_str().to_owned()));
    fields.push(("data", doc.to_string()));
    fields
}

/// One instance hash as read: `data`, `version`, and the live fields.
pub(super) type RawInstance = (Option<String>, Option<u64>, Option<String>, Option<String>, Option<String>);

/// An instance record from its hash (`None` when it does not exist). Records written before
/// the live fields existed hold everything in their JSON.
pub(super) fn decode_instance(key: &str, raw: &RawInstance) -> Result<Option<Versioned<InstanceRecord>>, StoreError> {
    let (Some(data), version, desired, generation, updated) = raw else { return Ok(None) };
    let corrupt = |source| StoreError::Corrupt { key: key.to_owned(), source };
    let mut doc: Value = serde_json::from_str(data).map_err(corrupt)?;
    if let Some(o) = doc.as_object_mut() {
        let live = [desired, generation, updated];
        for ((_, name), value) in LIVE.iter().zip(live) {
            if let Some(v) = value {
                let v = if *name == "generation" {
                    Value::from(v.parse::<u64>().unwrap_or_default())
                } else {
                    Value::from(v.clone())
                };
                o.insert((*name).to_owned(), v);
            }
        }
    }
    let value = serde_json::from_value(doc).map_err(corrupt)?;
    Ok(Some(Versioned { value, version: version.unwrap_or_default() }))
}

/// Where an instance runs (see [`Instances::placements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub platform: Platform,
    pub observed: Option<ObservedRecord>,
}

/// Instance records.
pub struct Instances<'a> {
    pub(super) store: &'a Store,
}

impl Instances<'_> {
    /// Store a new instance and its configuration; fails with `NameTaken` when the name is
    /// used, and with `OverQuota` when its creator (`created_by`) has `max_instances` already.
    pub async fn create(
        &self,
        instance: &InstanceRecord,
        config: &DrasiConfig,
        max_instances: Option<u64>,
    ) -> Result<(), StoreError> {
        self.create_with_secrets(instance, config, max_instances, &[]).await
    }

    /// Store a new instance, its configuration and its first secrets, all or nothing (see
    /// [`create`](Self::create)).
    pub async fn create_with_secrets(
        &self,
        instance: &InstanceRecord,
        config: &DrasiConfig,
        max_instances: Option<u64>,
        secrets: &[(SecretName, Sealed)],
    ) -> Result<(), StoreError> {
        let (id, k) = (&instance.id, self.store.keys());
        let owner = instance.created_by.as_deref().unwrap_or_default();
        let mut inv = scripts::create().prepare_invoke();
        inv.key(k.names()).key(k.instances()).key(k.instance(id)).key(k.config(id)).key(k.owned(owner));
        inv.key(k.secrets(id));
        inv.arg(instance.name.as_str())
            .arg(id.as_str())
            .arg(to_json(config))
            .arg(max_instances.map(|m| m.to_string()).unwrap_or_default())
            .arg(owner)
            .arg(secrets.len());
        for (name, sealed) in secrets {
            inv.arg(name.as_str()).arg(to_json(sealed));
        }
        for (field, value) in instance_fields(instance) {
            inv.arg(field).arg(value);
        }
        let outcome: String = inv.invoke_async(&mut self.store.conn()).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "name_taken" => Err(StoreError::NameTaken),
            other => match other.strip_prefix("over_quota:").and_then(|c| c.parse().ok()) {
                Some(count) => Err(StoreError::OverQuota { token: owner.to_owned(), count }),
                None => Err(StoreError::Protocol(format!("create answered {other:?}"))),
            },
        }
    }

    /// Read everything about an instance in one round trip.
    pub async fn load(&self, id: &InstanceId) -> Result<Option<InstanceState>, StoreError> {
        let mut states = self.load_many(std::slice::from_ref(id)).await?;
        Ok(states.pop().flatten())
    }

    /// Read many instances in one pipelined round trip; `None` for ids that do not exist, and
    /// (reported, see [`assemble`]) for those whose instance record cannot be read, so one
    /// bad record never fails a list or a pass.
    pub async fn load_many(&self, ids: &[InstanceId]) -> Result<Vec<Option<InstanceState>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.store.keys();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(k.instance(id), &["data", "version", "desired", "generation", "updatedAt"])
                .hmget(k.config(id), &["data", "version"])
                .hmget(k.observed(id), &["data", "version"])
                .hmget(k.probe(id), &["data", "version"])
                .hget(k.secrets(id), super::secrets::REV)
                .hkeys(k.secrets(id));
        }
        let raw: Vec<redis::Value> = pipe.query_async(&mut self.store.conn()).await?;
        let parse = |v: &redis::Value| -> Result<(Option<String>, Option<u64>), StoreError> {
            redis::from_redis_value_ref(v).map_err(|e| StoreError::Protocol(format!("load: {e}")))
        };
        ids.iter()
            .zip(raw.chunks(6))
            .map(|(id, r)| {
                let instance: RawInstance =
                    redis::from_redis_value_ref(&r[0]).map_err(|e| StoreError::Protocol(format!("load: {e}")))?;
                let rev: Option<u64> =
                    redis::from_redis_value_ref(&r[4]).map_err(|e| StoreError::Protocol(format!("load: {e}")))?;
                let names: Vec<String> =
                    redis::from_redis_value_ref(&r[5]).map_err(|e| StoreError::Protocol(format!("load: {e}")))?;
                let secret_names = names.into_iter().filter(|n| n != super::secrets::REV).collect();
                let state = assemble(self.store, id, &instance, [&parse(&r[1])?, &parse(&r[2])?, &parse(&r[3])?])
                    .map(|s| s.map(|s| InstanceState { secrets_rev: rev.unwrap_or_default(), secret_names, ..s }));
                match state {
                    Err(e @ StoreError::Corrupt { .. }) if ids.len() > 1 => {
                        report_corrupt(&e);
                        Ok(None)
                    }
                    other => other,
                }
            })
            .collect()
    }

    /// Where many instances run, as a log shipper looks for its own: the platform and what
    /// was observed, read in one pipelined round trip of two reads each, with no
    /// configuration read or decoded (a scan over every instance of a fleet runs every few
    /// seconds on every worker). `None` for ids that do not exist; an observed record that
    /// cannot be read counts as none. Records written before the platform had a field of
    /// its own are loaded whole.
    pub async fn placements(&self, ids: &[InstanceId]) -> Result<Vec<Option<Placement>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.store.keys();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(k.instance(id), "platform").hget(k.observed(id), "data");
        }
        let raw: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut self.store.conn()).await?;
        let mut found: Vec<Option<Placement>> = raw
            .into_iter()
            .map(|(platform, observed)| {
                let platform = serde_json::from_value(Value::from(platform?)).ok()?;
                let observed = observed.and_then(|o| serde_json::from_str::<ObservedRecord>(&o).ok());
                Some(Placement { platform, observed })
            })
            .collect();
        // No platform field: gone, or stored before the field existed.
        let whole: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        if !whole.is_empty() {
            let older: Vec<InstanceId> = whole.iter().map(|&i| ids[i].clone()).collect();
            for (i, state) in whole.into_iter().zip(self.load_many(&older).await?) {
                found[i] = state
                    .map(|s| Placement { platform: s.instance.value.platform, observed: s.observed.map(|o| o.value) });
            }
        }
        Ok(found)
    }

    /// The id owning `name`, if any.
    pub async fn id_by_name(&self, name: &InstanceName) -> Result<Option<InstanceId>, StoreError> {
        let id: Option<String> = self.store.conn().hget(self.store.keys().names(), name.as_str()).await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// Instance ids after `cursor` in creation order, at most `count`.
    pub async fn ids_after(&self, cursor: Option<&InstanceId>, count: usize) -> Result<Vec<InstanceId>, StoreError> {
        let min = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let ids: Vec<String> =
            self.store.conn().zrangebylex_limit(self.store.keys().instances(), min, "+", 0, count as isize).await?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Change an instance: `change` edits a copy of what was read (and may refuse); the
    /// result is written only if nobody wrote in between, otherwise it is read and tried again.
    /// The generation goes up when the desired state, the runtime options or the configuration
    /// changed (and every worker waiting on an older generation is told).
    pub async fn update<T, E, F>(&self, id: &InstanceId, change: F) -> Result<(InstanceState, T), E>
    where
        E: From<StoreError>,
        F: FnMut(&mut InstanceState) -> Result<T, E>,
    {
        self.update_by(id, None, change).await
    }

    /// [`update`](Self::update) asked for by the token named `by`: a change records it as the
    /// instance's `updated_by`.
    pub async fn update_by<T, E, F>(
        &self,
        id: &InstanceId,
        by: Option<&str>,
        mut change: F,
    ) -> Result<(InstanceState, T), E>
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
                if let Some(by) = by {
                    after.instance.value.updated_by = Some(by.to_owned());
                }
            }
            if !instance_changed && !config_changed {
                return Ok((after, out));
            }
            if let Some((iv, cv)) = self.cas(&before, &after, instance_changed, config_changed).await? {
                after.instance.version = iv;
                after.config.version = cv;
                return Ok((after, out));
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
        let (id, k) = (before.id(), self.store.keys());
        let (old_gen, new_gen) = (before.instance.value.generation, after.instance.value.generation);
        let message = if new_gen != old_gen { super::events::generation_message(id, new_gen) } else { String::new() };
        let mut inv = scripts::cas().prepare_invoke();
        inv.key(k.instance(id)).key(k.config(id));
        inv.arg(2).arg(k.events()).arg(message);
        let fields = if instance_changed { instance_fields(&after.instance.value) } else { Vec::new() };
        inv.arg(before.instance.version).arg(fields.len());
        for (field, value) in fields {
            inv.arg(field).arg(value);
        }
        inv.arg(before.config.version);
        if config_changed {
            inv.arg(1).arg("data").arg(to_json(&after.config.value));
        } else {
            inv.arg(0);
        }
        let (old, new) = (&before.instance.value.name, &after.instance.value.name);
        if old != new {
            inv.key(k.names()).arg(old.as_str()).arg(new.as_str()).arg(id.as_str());
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.store.conn()).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let v = |i: usize| reply.get(i).and_then(|s| s.parse().ok()).unwrap_or_default();
                Ok(Some((v(1), v(2))))
            }
            Some("name_taken") => Err(StoreError::NameTaken),
            _ => Ok(None),
        }
    }

    /// Remove every record of an instance and free its port (its operations expire on their
    /// own).
    pub async fn delete(&self, id: &InstanceId) -> Result<(), StoreError> {
        let k = self.store.keys();
        let _: i32 = scripts::delete()
            .key(k.names())
            .key(k.instances())
            .key(k.instance(id))
            .key(k.config(id))
            .key(k.observed(id))
            .key(k.fence(id))
            .key(k.history(id))
            .key(k.crash_loop(id))
            .key(k.probe(id))
            .key(k.ports())
            .key(k.port_by_instance())
            .key(k.port_owners(id))
            .key(k.logs(id))
            .key(k.log_shipper(id))
            .key(k.secrets(id))
            .arg(id.as_str())
            .arg(k.owned_prefix())
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(())
    }

    /// The instance's current generation (`None` when it is gone).
    pub async fn generation(&self, id: &InstanceId) -> Result<Option<u64>, StoreError> {
        let key = self.store.keys().instance(id);
        let raw: RawInstance =
            self.store.conn().hmget(&key, &["data", "version", "desired", "generation", "updatedAt"]).await?;
        Ok(decode_instance(&key, &raw)?.map(|r| r.value.generation))
    }

    /// Write what was observed; a status change is recorded in the history. With a lease
    /// value, the write happens only while that lease is still held (fencing); without one,
    /// only while no worker holds the instance's lease (an operation in flight owns the
    /// status); with `expected_version`, only if the observed record is still at that version
    /// (0: none yet), so a judgement made from an older read never overwrites a newer one.
    /// Returns whether it wrote.
    pub async fn observe(
        &self,
        id: &InstanceId,
        observed: &ObservedRecord,
        cause: Cause<'_>,
        lease: Option<&str>,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let (k, limits) = (self.store.keys(), self.store.limits());
        let mut inv = scripts::observe().prepare_invoke();
        inv.key(k.observed(id)).key(k.history(id)).key(k.changes()).key(k.lease(id));
        inv.arg(to_json(observed))
            .arg(observed.status.as_str())
            .arg(id.as_str())
            .arg(now())
            .arg(cause.source)
            .arg(cause.reason)
            .arg(limits.history_per_instance)
            .arg(limits.history_global)
            .arg(lease.unwrap_or_default())
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(cause.by);
        let version: u64 = inv.invoke_async(&mut self.store.conn()).await?;
        Ok(version > 0)
    }

    /// The version of the observed record (0: none yet).
    pub async fn observed_version(&self, id: &InstanceId) -> Result<u64, StoreError> {
        let v: Option<u64> = self.store.conn().hget(self.store.keys().observed(id), "version").await?;
        Ok(v.unwrap_or(0))
    }

    /// Store the last probe of many instances in one pipelined round trip.
    pub async fn record_probes(&self, probes: &[(InstanceId, ProbeRecord)]) -> Result<(), StoreError> {
        if probes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, record) in probes {
            pipe.hset(self.store.keys().probe(id), "data", to_json(record)).ignore();
        }
        let _: () = pipe.query_async(&mut self.store.conn()).await?;
        Ok(())
    }
}

/// An instance from its four records as read (`None` when the instance does not exist). A
/// configuration or observed record that cannot be decoded does not fail the read: it is
/// reported (log, metric) and the state says so ([`InstanceState::unreadable`]). Only an
/// unreadable instance record, without which there is nothing to show, is an error.
pub(super) fn assemble(
    store: &Store,
    id: &InstanceId,
    instance: &RawInstance,
    raw: [&(Option<String>, Option<u64>); 3],
) -> Result<Option<InstanceState>, StoreError> {
    let k = store.keys();
    let instance = decode_instance(&k.instance(id), instance)?;
    let mut unreadable = None;
    let mut tolerate = |e: StoreError| {
        report_corrupt(&e);
        unreadable.get_or_insert_with(|| e.to_string());
    };
    let config = decode(&k.config(id), raw[0]).unwrap_or_else(|e| {
        tolerate(e);
        Some(Versioned { value: DrasiConfig::default(), version: raw[0].1.unwrap_or_default() })
    });
    let observed = decode(&k.observed(id), raw[1]).unwrap_or_else(|e| {
        tolerate(e);
        None
    });
    // A probe record is advisory: an unreadable one is as good as none.
    let probe = decode::<ProbeRecord>(&k.probe(id), raw[2]).ok().flatten().map(|v| v.value);
    Ok(match (instance, config) {
        (Some(instance), Some(config)) => Some(InstanceState {
            instance,
            config,
            observed,
            probe,
            unreadable,
            secrets_rev: 0,
            secret_names: Default::default(),
        }),
        _ => None,
    })
}

/// Say that a record could not be read: once per read, in the log and in a metric.
pub(super) fn report_corrupt(e: &StoreError) {
    tracing::error!(error = %e, "a record cannot be read; it is skipped (delete the instance or replace its configuration)");
    crate::metrics::metrics().corrupt_record();
}

/// Now, as the records write times (RFC 3339, milliseconds, UTC).
pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
