//! Node heartbeats: a node id names a host; a worker renews its node's key while it lives.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::store::{Keys, StoreError};

/// Check a node id: it becomes part of queue names and keys.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(format!("node id '{id}' must be 1-63 characters of [A-Za-z0-9_.-]")) }
}

/// Node liveness.
#[derive(Clone)]
pub struct Nodes {
    conn: ConnectionManager,
    keys: Keys,
}

impl Nodes {
    /// Nodes under `keys`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Say `node` is alive for `ttl`.
    pub async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = chrono::Utc::now().to_rfc3339();
        let _: () = redis::pipe()
            .set_ex(self.keys.node(node), now, ttl.as_secs().max(1))
            .ignore()
            .sadd(self.keys.nodes(), node)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Is `node` alive?
    pub async fn is_alive(&self, node: &str) -> Result<bool, StoreError> {
        Ok(self.conn.clone().exists(self.keys.node(node)).await?)
    }
}
