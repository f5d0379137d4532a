//! The plugin catalogs workers publish (what each node's processes, each Docker worker, and
//! the Kubernetes platform can run), so the API can refuse a configuration that names a kind
//! its instance's platform lacks. Each worker republishes on its heartbeat; a catalog not
//! renewed for `STALE_SECS` is left out.

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, to_json};
use crate::domain::plugins::{Catalog, Scope};

/// A catalog older than this is not counted (its worker is gone).
const STALE_SECS: i64 = 120;

#[derive(Serialize, Deserialize)]
struct Published {
    #[serde(flatten)]
    catalog: Catalog,
    at: DateTime<Utc>,
}

/// Published catalogs.
pub struct Plugins<'a> {
    pub(super) store: &'a Store,
}

impl Plugins<'_> {
    /// Publish what `scope` provides now.
    pub async fn publish(&self, scope: &Scope, catalog: &Catalog) -> Result<(), StoreError> {
        let record = Published { catalog: catalog.clone(), at: Utc::now() };
        let _: () = self.store.conn().hset(self.store.keys().plugins(), scope.key(), to_json(&record)).await?;
        Ok(())
    }

    /// Every catalog renewed recently, with when.
    pub async fn all(&self) -> Result<Vec<(Scope, Catalog, DateTime<Utc>)>, StoreError> {
        let raw: Vec<(String, String)> = self.store.conn().hgetall(self.store.keys().plugins()).await?;
        let fresh = Utc::now() - chrono::Duration::seconds(STALE_SECS);
        Ok(raw
            .into_iter()
            .filter_map(|(scope, json)| {
                let p: Published = serde_json::from_str(&json).ok()?;
                (p.at >= fresh).then_some((Scope::parse(&scope)?, p.catalog, p.at))
            })
            .collect())
    }
}
