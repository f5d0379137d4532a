//! Node heartbeats: a node id names a host; a worker renews its node's key while it lives.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Store, StoreError};

/// Node liveness.
pub struct Nodes<'a> {
    pub(super) store: &'a Store,
}

impl Nodes<'_> {
    /// Say `node` is alive for `ttl`.
    pub async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<(), StoreError> {
        let k = self.store.keys();
        let now = chrono::Utc::now().to_rfc3339();
        let _: () = redis::pipe()
            .set_ex(k.node(node), now, ttl.as_secs().max(1))
            .ignore()
            .sadd(k.nodes(), node)
            .ignore()
            .query_async(&mut self.store.conn())
            .await?;
        Ok(())
    }

    /// Is `node` alive?
    pub async fn is_alive(&self, node: &str) -> Result<bool, StoreError> {
        Ok(self.store.conn().exists(self.store.keys().node(node)).await?)
    }

    /// Every node ever seen, sorted.
    pub async fn all(&self) -> Result<Vec<String>, StoreError> {
        let mut nodes: Vec<String> = self.store.conn().smembers(self.store.keys().nodes()).await?;
        nodes.sort();
        Ok(nodes)
    }

    /// The nodes whose heartbeat is current (one pipelined round trip after the list).
    pub async fn live(&self) -> Result<Vec<String>, StoreError> {
        let nodes = self.all().await?;
        if nodes.is_empty() {
            return Ok(nodes);
        }
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.exists(self.store.keys().node(n));
        }
        let alive: Vec<bool> = pipe.query_async(&mut self.store.conn()).await?;
        Ok(nodes.into_iter().zip(alive).filter(|(_, a)| *a).map(|(n, _)| n).collect())
    }
}
