//! Port allocation, atomic in Redis: per node, from a range, never shared by two instances
//! however many workers allocate at once. A port named in the config is honoured and reserved.

use redis::aio::ConnectionManager;

use crate::ids::InstanceId;
use crate::store::{Keys, StoreError};

/// KEYS: ports (`node|port` → id), by-instance (id → `node|port`).
/// ARGV: node, id, first, last, wanted (0 = any), then ports to skip.
/// Replies the port, -1 when `wanted` belongs to another instance, 0 when the range is full.
static ALLOCATE_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
const ALLOCATE: &str = r"
local node, id, wanted = ARGV[1], ARGV[2], tonumber(ARGV[5])
local skip = {}
for i = 6, #ARGV do skip[tonumber(ARGV[i])] = true end
local cur = redis.call('HGET', KEYS[2], id)
if cur then
  local n, p = string.match(cur, '^(.*)|(%d+)$')
  local keep = (wanted == 0 and not skip[tonumber(p)]) or tonumber(p) == wanted
  if n == node and keep then return tonumber(p) end
  redis.call('HDEL', KEYS[1], cur)
  redis.call('HDEL', KEYS[2], id)
end
local function take(p)
  local f = node .. '|' .. p
  redis.call('HSET', KEYS[1], f, id)
  redis.call('HSET', KEYS[2], id, f)
  return p
end
if wanted ~= 0 then
  local owner = redis.call('HGET', KEYS[1], node .. '|' .. wanted)
  if owner and owner ~= id then return -1 end
  return take(wanted)
end
for p = tonumber(ARGV[3]), tonumber(ARGV[4]) do
  if not skip[p] and redis.call('HEXISTS', KEYS[1], node .. '|' .. p) == 0 then return take(p) end
end
return 0
";

/// KEYS: ports, by-instance. ARGV: id.
static RELEASE_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
const RELEASE: &str = r"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then redis.call('HDEL', KEYS[1], cur) redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
";

/// Why no port was allocated.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("port {0} is already allocated to another instance on this node")]
    Taken(u16),
    #[error("no free port left in {0}-{1} on this node")]
    Exhausted(u16, u16),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Port allocator.
#[derive(Clone)]
pub struct Ports {
    conn: ConnectionManager,
    keys: Keys,
}

impl Ports {
    /// Allocator under `keys`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// The port of `id` on `node`: `wanted` if given, else its current one unless it is in
    /// `skip`, else the first free one in `range` not in `skip` (ports something else on the
    /// host listens on: the allocation table can lag behind the host, e.g. after Redis lost its
    /// last second of writes).
    pub async fn allocate(
        &self,
        node: &str,
        id: &InstanceId,
        range: (u16, u16),
        wanted: Option<u16>,
        skip: &[u16],
    ) -> Result<u16, PortError> {
        let mut inv = crate::store::scripts::cached(&ALLOCATE_SCRIPT, ALLOCATE).prepare_invoke();
        inv.key(self.keys.ports())
            .key(self.keys.port_by_instance())
            .arg(node)
            .arg(id.as_str())
            .arg(range.0)
            .arg(range.1)
            .arg(wanted.unwrap_or(0));
        for p in skip {
            inv.arg(*p);
        }
        let port: i64 = inv.invoke_async(&mut self.conn.clone()).await.map_err(StoreError::from)?;
        match port {
            -1 => Err(PortError::Taken(wanted.unwrap_or_default())),
            0 => Err(PortError::Exhausted(range.0, range.1)),
            p => Ok(u16::try_from(p).unwrap_or_default()),
        }
    }

    /// Free the port of `id`, wherever it is.
    pub async fn release(&self, id: &InstanceId) -> Result<(), StoreError> {
        let _: i32 = crate::store::scripts::cached(&RELEASE_SCRIPT, RELEASE)
            .key(self.keys.ports())
            .key(self.keys.port_by_instance())
            .arg(id.as_str())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
