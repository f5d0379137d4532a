//! Lua scripts that make multi-key writes atomic. Each touches only keys under one hash tag.

use std::sync::OnceLock;

use redis::Script;

/// Create an instance unless its name is taken.
/// KEYS: names, instances, instance, config. ARGV: name, id, instance json, config json.
const CREATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'name_taken' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('HSET', KEYS[3], 'data', ARGV[3], 'version', 1)
redis.call('HSET', KEYS[4], 'data', ARGV[4], 'version', 1)
return 'ok'
";

/// Compare-and-set over n versioned hashes, with an optional rename in the name index.
/// KEYS[1..n]: versioned hashes; KEYS[n+1]: names (rename only).
/// ARGV[1] = n; then per hash: expected version, new data ('' = check only);
/// then (rename only): old name, new name, id.
/// Replies {'ok', v1, ..., vn}, {'conflict'} or {'name_taken'}.
const CAS: &str = r"
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('HGET', KEYS[i], 'version') ~= ARGV[2 * i] then return {'conflict'} end
end
local r = 2 * n + 2
if ARGV[r] then
  local owner = redis.call('HGET', KEYS[n + 1], ARGV[r + 1])
  if owner and owner ~= ARGV[r + 2] then return {'name_taken'} end
  redis.call('HDEL', KEYS[n + 1], ARGV[r])
  redis.call('HSET', KEYS[n + 1], ARGV[r + 1], ARGV[r + 2])
end
local out = {'ok'}
for i = 1, n do
  local data = ARGV[2 * i + 1]
  if data ~= '' then
    redis.call('HSET', KEYS[i], 'data', data)
    table.insert(out, tostring(redis.call('HINCRBY', KEYS[i], 'version', 1)))
  else
    table.insert(out, ARGV[2 * i])
  end
end
return out
";

/// Remove an instance's records.
/// KEYS: names, instances, instance, config, observed, fence, history, crash loop, probe. ARGV: id.
const DELETE: &str = r"
local data = redis.call('HGET', KEYS[3], 'data')
if data then
  local name = cjson.decode(data).name
  if name and redis.call('HGET', KEYS[1], name) == ARGV[1] then redis.call('HDEL', KEYS[1], name) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
return 1
";

pub(crate) fn delete() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    cached(&S, DELETE)
}

/// Write observed state; record a status transition in the instance history and the global
/// stream. KEYS: observed, history, changes, lease. ARGV: data, status, id, at, source,
/// reason, history cap, global cap, lease value ('' = only while nobody holds the lease).
/// Replies 0 when the guard fails.
const OBSERVE: &str = r"
local holder = redis.call('GET', KEYS[4])
if ARGV[9] == '' then
  if holder then return 0 end
elseif holder ~= ARGV[9] then
  return 0
end
if ARGV[10] ~= '' and (redis.call('HGET', KEYS[1], 'version') or '0') ~= ARGV[10] then
  return 0
end
local old = redis.call('HGET', KEYS[1], 'data')
local from = 'created'
if old then from = cjson.decode(old).status or 'created' end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
if from ~= ARGV[2] then
  local rec = cjson.encode({at = ARGV[4], instanceId = ARGV[3], from = from, to = ARGV[2], source = ARGV[5], reason = ARGV[6]})
  redis.call('LPUSH', KEYS[2], rec)
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'data', rec)
end
return 1
";

pub(crate) fn observe() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    cached(&S, OBSERVE)
}

/// A script compiled (hashed) once per process.
pub(crate) fn cached(cell: &'static OnceLock<Script>, source: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(source))
}

pub(crate) fn create() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    cached(&S, CREATE)
}

pub(crate) fn cas() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    cached(&S, CAS)
}
