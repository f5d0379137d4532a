//! Port allocation, atomic in Redis: per pool (a node for processes, the engine for
//! containers), from a range, never shared by two instances however many workers allocate at
//! once. A port named in the config is honoured and reserved. A start allocates its port in
//! the `begin` script; this view is for the rest.

use redis::AsyncCommands;

use super::operations::Allocated;
use super::{Store, StoreError, scripts};
use crate::domain::ids::InstanceId;

/// Port pools.
pub struct Ports<'a> {
    pub(super) store: &'a Store,
}

impl Ports<'_> {
    /// The port of `id` in `pool`: `wanted` if given, else its current one unless it is in
    /// `skip`, else the first free one in `range` not in `skip` (ports something else on the
    /// host listens on: the allocation table can lag behind the host, e.g. after Redis lost its
    /// last second of writes).
    pub async fn allocate(
        &self,
        pool: &str,
        id: &InstanceId,
        range: (u16, u16),
        wanted: Option<u16>,
        skip: &[u16],
    ) -> Result<Allocated, StoreError> {
        self.allocate_for(pool, id, id.as_str(), range, wanted, skip).await
    }

    /// [`Ports::allocate`] for a component of instance `id` that listens (`component` is its
    /// listener name, `sources/<id>`).
    pub async fn allocate_component(
        &self,
        pool: &str,
        id: &InstanceId,
        component: &str,
        range: (u16, u16),
        wanted: Option<u16>,
        skip: &[u16],
    ) -> Result<Allocated, StoreError> {
        self.allocate_for(pool, id, &format!("{id}/{component}"), range, wanted, skip).await
    }

    async fn allocate_for(
        &self,
        pool: &str,
        id: &InstanceId,
        owner: &str,
        range: (u16, u16),
        wanted: Option<u16>,
        skip: &[u16],
    ) -> Result<Allocated, StoreError> {
        let k = self.store.keys();
        let mut inv = scripts::allocate().prepare_invoke();
        inv.key(k.ports()).key(k.port_by_instance()).key(k.port_owners(id));
        inv.arg(pool).arg(owner).arg(range.0).arg(range.1).arg(wanted.unwrap_or(0)).arg(skip);
        let port: i64 = inv.invoke_async(&mut self.store.conn()).await?;
        Ok(match port {
            -1 => Allocated::Taken,
            0 => Allocated::Exhausted,
            p => Allocated::Port(u16::try_from(p).map_err(|_| StoreError::Protocol(format!("port {p}")))?),
        })
    }

    /// Free the ports of the components of `id` that are not in `keep` (they left the
    /// configuration). `owners`: who holds the instance's ports, when already read (no round
    /// trip then unless one is to be freed).
    pub async fn release_components_except(
        &self,
        id: &InstanceId,
        keep: &[String],
        owners: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let k = self.store.keys();
        let owners: Vec<String> = match owners {
            Some(known) => known.to_vec(),
            None => self.store.conn().smembers(k.port_owners(id)).await?,
        };
        let keep: Vec<String> = keep.iter().map(|c| format!("{id}/{c}")).collect();
        let gone: Vec<String> = owners.into_iter().filter(|o| o != id.as_str() && !keep.contains(o)).collect();
        if gone.is_empty() {
            return Ok(());
        }
        let _: i32 = scripts::release_port()
            .key(k.ports())
            .key(k.port_by_instance())
            .key(k.port_owners(id))
            .arg(gone)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(())
    }
}
