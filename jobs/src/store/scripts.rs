//! Every Lua script of the store, in one place. Each makes one state transition atomic and
//! touches only keys under the deployment's hash tag (keys a script builds from a prefix share
//! that tag, so they stay in the slot of the keys it is given).
//!
//! Pieces used by several scripts (observing a status, laying out a job as apalis-redis does,
//! allocating a port) are Lua functions defined once below and spliced in with `concat!`.

use std::sync::OnceLock;

use redis::Script;

/// `observe(...)`: write an observed record and, when its status changed, record the
/// transition in the instance's capped list and the global capped stream. `lease` is the
/// holder's lease value, or '' for "only while nobody holds the lease"; `expected` is the
/// observed version the writer read ('' = any); `by` who asked for the operation that caused
/// it ('' = nobody: an observation of its own). Returns the new version, or 0 when a guard
/// failed.
macro_rules! lua_observe {
    () => {
        r"
local function observe(okey, hkey, ckey, lkey, data, status, id, at, source, reason, hcap, gcap, lease, expected, by)
  local holder = redis.call('GET', lkey)
  if lease == '' then
    if holder then return 0 end
  elseif holder ~= lease then
    return 0
  end
  if expected ~= '' and (redis.call('HGET', okey, 'version') or '0') ~= expected then return 0 end
  local old = redis.call('HGET', okey, 'data')
  local from = 'created'
  if old then from = cjson.decode(old).status or 'created' end
  redis.call('HSET', okey, 'data', data)
  local v = redis.call('HINCRBY', okey, 'version', 1)
  if from ~= status then
    local change = {at = at, instanceId = id, from = from, to = status, source = source, reason = reason}
    if by and by ~= '' then change.requestedBy = by end
    local rec = cjson.encode(change)
    redis.call('LPUSH', hkey, rec)
    redis.call('LTRIM', hkey, 0, tonumber(hcap) - 1)
    redis.call('XADD', ckey, 'MAXLEN', '~', gcap, '*', 'data', rec)
  end
  return v
end
"
    };
}

/// `push_job(...)`: a job laid out exactly as apalis-redis 1.0's own push (`batch_push.lua`)
/// lays it out: the encoded job in the data hash (unless that task id exists: a second push of
/// one task is ignored), its meta hash, and its id in the scheduled set at `now` (apalis clamps
/// every run-at to now, and its fetch promotes due ids). Then every worker of the deployment
/// is told which queue has work, so an idle one fetches at once instead of at its next poll.
/// `tests/tests/queue_layout.rs` checks the layout against apalis' own push.
macro_rules! lua_push_job {
    () => {
        r"
local function push_job(data_key, meta_prefix, scheduled_key, task_id, job, now, channel, queue)
  if redis.call('HSETNX', data_key, task_id, job) == 0 then return 0 end
  redis.call('HSET', meta_prefix .. ':' .. task_id, 'attempts', 0, 'max_attempts', 25, 'status', 'Pending', 'idempotency_key', '')
  redis.call('ZADD', scheduled_key, now, task_id)
  redis.call('PUBLISH', channel, 'w|' .. queue)
  return 1
end
"
    };
}

/// `outstanding(...)`: the tasks of one apalis-redis queue not yet finished, in one step:
/// waiting (the ready list plus the due part of the scheduled set), later (scheduled after
/// `now`: retries backing off) and running (the in-flight set of every registered worker).
/// apalis' own scripts move an id between these atomically (fetch: scheduled → list →
/// in-flight; acknowledgement: in-flight → done or back to scheduled; orphan recovery:
/// in-flight → list), so a sum read inside one script counts every unfinished task once.
macro_rules! lua_outstanding {
    () => {
        r"
local function outstanding(scheduled, active, workers, inflight, now)
  local due = redis.call('ZCOUNT', scheduled, '-inf', now)
  local later = redis.call('ZCARD', scheduled) - due
  local running = 0
  for _, w in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
    running = running + redis.call('SCARD', inflight .. ':' .. w)
  end
  return redis.call('LLEN', active) + due, later, running
end
"
    };
}

/// `allocate(...)`: the port of instance `id` in pool `node`: `wanted` if given and inside the
/// range (-1 when another instance has it), else its current one unless skipped or outside
/// the range (a reservation outside it is released), else the first free one of the range
/// not skipped (0 when there is none).
macro_rules! lua_allocate {
    () => {
        r"
local function allocate(ports, byinst, node, id, first, last, wanted, skip)
  if wanted < first or wanted > last then wanted = 0 end
  local cur = redis.call('HGET', byinst, id)
  if cur then
    local n, p = string.match(cur, '^(.*)|(%d+)$')
    local inside = tonumber(p) >= first and tonumber(p) <= last
    local keep = inside and ((wanted == 0 and not skip[tonumber(p)]) or tonumber(p) == wanted)
    if n == node and keep then return tonumber(p) end
    redis.call('HDEL', ports, cur)
    redis.call('HDEL', byinst, id)
  end
  local function take(p)
    local f = node .. '|' .. p
    redis.call('HSET', ports, f, id)
    redis.call('HSET', byinst, id, f)
    return p
  end
  if wanted ~= 0 then
    local owner = redis.call('HGET', ports, node .. '|' .. wanted)
    if owner and owner ~= id then return -1 end
    return take(wanted)
  end
  for p = first, last do
    if not skip[p] and redis.call('HEXISTS', ports, node .. '|' .. p) == 0 then return take(p) end
  end
  return 0
end
"
    };
}

macro_rules! script {
    ($(#[$meta:meta])* $name:ident = $source:expr) => {
        $(#[$meta])*
        pub(crate) fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new($source))
        }
    };
}

script!(
    /// Create an instance unless its name is taken or its creator has its quota of instances
    /// (noting it among the creator's instances), with its first secrets.
    /// KEYS: names, instances, instance, config, the creator's instances, secrets. ARGV: name,
    /// id, config json, max instances of the creator ('' = no limit), creator ('' = none), n,
    /// then n secret name, sealed value pairs, then the instance's field, value pairs.
    /// Replies 'ok', 'name_taken' or 'over_quota:<count>'.
    create = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'name_taken' end
if ARGV[4] ~= '' then
  local count = redis.call('SCARD', KEYS[5])
  if count >= tonumber(ARGV[4]) then return 'over_quota:' .. count end
end
if ARGV[5] ~= '' then redis.call('SADD', KEYS[5], ARGV[2]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('HSET', KEYS[4], 'data', ARGV[3], 'version', 1)
redis.call('HSET', KEYS[3], 'version', 1)
local n = tonumber(ARGV[6])
redis.call('DEL', KEYS[6])
for i = 7, 6 + 2 * n, 2 do redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1]) end
if n > 0 then redis.call('HSET', KEYS[6], '#rev', 1) end
for i = 7 + 2 * n, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return 'ok'
"
);

script!(
    /// Set one secret of an existing instance, within the instance's cap.
    /// KEYS: instance, secrets. ARGV: name, sealed value, most secrets per instance.
    /// Replies 'created', 'updated', 'full' or 'not_found'.
    secret_set = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
local new = redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
if new then
  local n = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], '#rev')
  if n >= tonumber(ARGV[3]) then return 'full' end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], '#rev', 1)
if new then return 'created' end
return 'updated'
"
);

script!(
    /// Remove one secret. KEYS: secrets. ARGV: name. Replies 1 when it existed.
    secret_remove = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], '#rev', 1)
return 1
"
);

script!(
    /// Replace a sealed value by the same value sealed anew, unless it changed meanwhile (the
    /// secret set did not change: `#rev` stays). KEYS: secrets. ARGV: name, old, new.
    secret_reseal = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"
);

script!(
    /// Compare-and-set over n versioned hashes, with an optional rename in the name index and
    /// an optional notification (a generation bump).
    /// KEYS[1..n]: versioned hashes; KEYS[n+1]: names (rename only).
    /// ARGV: n, channel, message ('' = none); then per hash: expected version, k, then k field,
    /// value pairs to write (k = 0: check only); then (rename only): old name, new name, id.
    /// Replies {'ok', v1, ..., vn}, {'conflict'} or {'name_taken'}.
    cas = r"
local n = tonumber(ARGV[1])
local writes, a = {}, 4
for i = 1, n do
  if redis.call('HGET', KEYS[i], 'version') ~= ARGV[a] then return {'conflict'} end
  local k = tonumber(ARGV[a + 1])
  writes[i] = {a + 2, k}
  a = a + 2 + 2 * k
end
if ARGV[a] then
  local owner = redis.call('HGET', KEYS[n + 1], ARGV[a + 1])
  if owner and owner ~= ARGV[a + 2] then return {'name_taken'} end
  redis.call('HDEL', KEYS[n + 1], ARGV[a])
  redis.call('HSET', KEYS[n + 1], ARGV[a + 1], ARGV[a + 2])
end
local out = {'ok'}
for i = 1, n do
  local first, k = writes[i][1], writes[i][2]
  if k > 0 then
    for j = first, first + 2 * k - 1, 2 do redis.call('HSET', KEYS[i], ARGV[j], ARGV[j + 1]) end
    table.insert(out, tostring(redis.call('HINCRBY', KEYS[i], 'version', 1)))
  else
    table.insert(out, redis.call('HGET', KEYS[i], 'version'))
  end
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return out
"
);

script!(
    /// Remove an instance's records and free its ports (the server's and its components').
    /// KEYS: names, instances, instance, config, observed, fence, history, crash loop, probe,
    /// ports, port-by-owner, the instance's port owners, logs, log shipper, secrets. ARGV: id,
    /// prefix of the sets of the instances each token created.
    delete = r"
local data = redis.call('HGET', KEYS[3], 'data')
if data then
  local rec = cjson.decode(data)
  local name = rec.name
  if name and redis.call('HGET', KEYS[1], name) == ARGV[1] then redis.call('HDEL', KEYS[1], name) end
  if type(rec.createdBy) == 'string' then redis.call('SREM', ARGV[2] .. rec.createdBy, ARGV[1]) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
local owners = redis.call('SMEMBERS', KEYS[12])
table.insert(owners, ARGV[1])
for _, owner in ipairs(owners) do
  local port = redis.call('HGET', KEYS[11], owner)
  if port then redis.call('HDEL', KEYS[10], port) redis.call('HDEL', KEYS[11], owner) end
end
redis.call('DEL', KEYS[12], KEYS[13], KEYS[14], KEYS[15])
return 1
"
);

script!(
    /// Hold one more stream of a token unless it holds `max` already (lapsed ones dropped
    /// first). KEYS: the token's streams. ARGV: stream id, now (unix ms), expiry (unix ms),
    /// max ('' = no limit). Replies 0 when held, else how many it holds.
    hold_stream = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if ARGV[4] ~= '' and n >= tonumber(ARGV[4]) then return n end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 0
"
);

script!(
    /// Renew a held stream (only if still held). KEYS: the token's streams. ARGV: stream id,
    /// expiry (unix ms). Replies 1 when renewed.
    renew_stream = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"
);

script!(
    /// Count an operation a token submits in the current minute (a fixed window).
    /// KEYS: the window's counter. ARGV: the window's remaining seconds plus a margin.
    /// Replies the count, this one included.
    count_op = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"
);

script!(
    /// Write observed state (see `observe` above).
    /// KEYS: observed, history, changes, lease. ARGV: data, status, id, at, source, reason,
    /// history cap, global cap, lease value, expected version, requested by ('' = none).
    /// Replies the new version or 0.
    observe = concat!(
        lua_observe!(),
        r"
return observe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
"
    )
);

script!(
    /// Submit an operation on an instance, in one step: check it (it exists, is at the version
    /// or generation the caller saw, is not being deleted), choose its queue (its node's for a
    /// placed process instance, the shared one otherwise) and check that queue's depth, record
    /// the new desired state (a new generation when it changed, and for every restart, so a
    /// start still waiting for its server steps aside), create and index the operation, lay out
    /// its job, wake the workers: all or nothing.
    /// KEYS: instance, observed, op, ops index, instance ops index, crash loop.
    /// ARGV: op ttl, op id, kind, reason, correlation id, created at, max attempts, force ('1'),
    /// max depth, now (unix s), channel, queue key prefix (`{p}:q:`), expected instance version
    /// ('' = any), seen generation ('' = any), reset crash loop ('1'), job schema version,
    /// task id, now (RFC 3339), requested by.
    /// Replies {'ok', queue, target generation, previous desired state, instance version},
    /// {'not_found'}, {'precondition', version}, {'stale', generation}, {'deleting'} or
    /// {'queue_full', queue, depth}.
    submit = concat!(
        lua_push_job!(),
        r"
local inst = redis.call('HMGET', KEYS[1], 'data', 'version', 'desired', 'generation')
if not inst[1] then return {'not_found'} end
if ARGV[13] ~= '' and inst[2] ~= ARGV[13] then return {'precondition', inst[2]} end
local rec = cjson.decode(inst[1])
local current = inst[3] or rec.desiredState
local generation = tonumber(inst[4] or rec.generation)
if ARGV[14] ~= '' and generation ~= tonumber(ARGV[14]) then return {'stale', tostring(generation)} end
local kind = ARGV[3]
if current == 'deleted' and kind ~= 'delete' then return {'deleting'} end
local desired = ({start = 'running', restart = 'running', stop = 'stopped', delete = 'deleted'})[kind] or current
local queue = 'shared'
if rec.platform == 'process' then
  local obs = redis.call('HGET', KEYS[2], 'data')
  local node = obs and cjson.decode(obs).node
  if node then queue = 'node-' .. node end
end
local qkey = ARGV[12] .. queue
local depth = redis.call('LLEN', qkey .. ':active') + redis.call('ZCARD', qkey .. ':scheduled')
if depth >= tonumber(ARGV[9]) then return {'queue_full', queue, tostring(depth)} end
local version = inst[2]
if desired ~= current or kind == 'restart' then
  generation = generation + 1
  redis.call('HSET', KEYS[1], 'desired', desired, 'generation', generation, 'updatedAt', ARGV[18])
  version = tostring(redis.call('HINCRBY', KEYS[1], 'version', 1))
  redis.call('PUBLISH', ARGV[11], 'g|' .. rec.id .. '|' .. generation)
end
local spec = cjson.encode({id = ARGV[2], kind = kind, instanceId = rec.id, maxAttempts = tonumber(ARGV[7]),
  createdAt = ARGV[6], targetGeneration = generation, correlationId = ARGV[5], reason = ARGV[4], queue = queue,
  previousDesired = current, force = ARGV[8] == '1', requestedBy = ARGV[19]})
redis.call('HSET', KEYS[3], 'spec', spec, 'status', 'queued', 'attempt', 0)
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[2])
if ARGV[15] == '1' then redis.call('DEL', KEYS[6]) end
local job = cjson.encode({schemaVersion = tonumber(ARGV[16]), kind = kind, instanceId = rec.id, operationId = ARGV[2],
  targetGeneration = generation, correlationId = ARGV[5], platform = rec.platform})
push_job(qkey .. ':data', qkey .. ':meta', qkey .. ':scheduled', ARGV[17], job, ARGV[10], ARGV[11], queue)
return {'ok', queue, tostring(generation), current, version}
"
    )
);

script!(
    /// Submit an operation on no instance (a reconcile pass over all of them): create and
    /// index the operation, lay out its job, wake the workers.
    /// KEYS: op, ops index, queue data, queue scheduled, queue active. ARGV: op ttl, op spec
    /// json, op id, max depth, task id, job json, now (unix s), channel, queue name, meta prefix.
    /// Replies {'ok'} or {'queue_full', depth}.
    submit_pass = concat!(
        lua_push_job!(),
        r"
local depth = redis.call('LLEN', KEYS[5]) + redis.call('ZCARD', KEYS[4])
if depth >= tonumber(ARGV[4]) then return {'queue_full', tostring(depth)} end
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'status', 'queued', 'attempt', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
push_job(KEYS[3], ARGV[10], KEYS[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return {'ok'}
"
    )
);

script!(
    /// Push a job without an operation (reconcile ticks, a job forwarded to its node).
    /// KEYS: queue data, queue scheduled. ARGV: task id, job json, now (unix s), meta prefix,
    /// channel, queue name. Replies 1, or 0 when the task id exists.
    push = concat!(
        lua_push_job!(),
        r"
return push_job(KEYS[1], ARGV[4], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6])
"
    )
);

script!(
    /// The unfinished tasks of some queues (see `outstanding` above), read at one instant.
    /// ARGV: now (unix s), then per queue its scheduled set, ready list, workers set and
    /// in-flight prefix. Replies {waiting, later, running} per queue.
    backlog = concat!(
        lua_outstanding!(),
        r"
local out = {}
for i = 2, #ARGV, 4 do
  local waiting, later, running = outstanding(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[1])
  table.insert(out, waiting)
  table.insert(out, later)
  table.insert(out, running)
end
return out
"
    )
);

script!(
    /// Queue the global reconcile pass of a cron tick, deciding once per tick for every
    /// producer: not when this tick (or a later one) was decided already; not when a pass
    /// still waits in the reconcile queue (it serves this tick too: with no worker running,
    /// passes would otherwise pile up); otherwise only when a worker has something to do: the
    /// shared queue holds unfinished work (a worker is awake for it anyway), or an instance is
    /// desired running (it is watched every tick). A deployment with neither queues nothing,
    /// so ticks alone never wake a scaled-to-zero worker.
    /// KEYS: last decided tick, reconcile data, reconcile scheduled, reconcile active,
    /// instances. ARGV: tick, task id, job json, now (unix s), reconcile meta prefix, channel,
    /// queue name, then the shared queue's scheduled set, ready list, workers set and in-flight
    /// prefix, then the instance key prefix.
    /// Replies 'decided', 'coalesced', 'idle', 'busy' or 'watch' (the last two queued it).
    tick = concat!(
        lua_push_job!(),
        lua_outstanding!(),
        r"
local tick = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tick then return 'decided' end
redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
if redis.call('ZCARD', KEYS[3]) + redis.call('LLEN', KEYS[4]) > 0 then return 'coalesced' end
local why = nil
local waiting, later, running = outstanding(ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[4])
if waiting + later + running > 0 then
  why = 'busy'
else
  for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
    local key = ARGV[12] .. id
    local desired = redis.call('HGET', key, 'desired')
    if not desired then
      local data = redis.call('HGET', key, 'data')
      desired = data and cjson.decode(data).desiredState
    end
    if desired == 'running' then
      why = 'watch'
      break
    end
  end
end
if not why then return 'idle' end
push_job(KEYS[2], ARGV[5], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[7])
return why
"
    )
);

script!(
    /// Begin (or resume) an attempt of an operation under the instance's lease, in one step:
    /// the operation must be queued or running; the instance must still be at the job's
    /// generation (else the operation ends `superseded`); a process instance placed on another
    /// node is reported (the job belongs there); the lease is taken (or, resuming, checked and
    /// extended); for a start, the port is allocated (and the instance's port owners read);
    /// the operation becomes `running`.
    /// KEYS: op, instance, config, observed, probe, lease, fence, ports, port-by-instance, the
    /// instance's port owners, its secrets.
    /// ARGV: holder, lease ttl ms, now, target generation, held lease ('' = take it), own node,
    /// node key prefix, op ttl, channel, op id, check placement ('1'), pool ('' = no port),
    /// first, last, instance id, then ports to skip.
    /// Replies {'gone'}, {'final', status}, {'no_instance'}, {'superseded'},
    /// {'foreign', node, alive}, {'busy'}, {'lease_lost'}, or {'ok', lease, port ('' = none;
    /// -1 taken; 0 exhausted), op fields, instance fields (data, version, desired, generation,
    /// updated at), config, cv, observed, ov, probe, port owners (nil without a pool), the
    /// secrets hash (sealed)}.
    begin = concat!(
        lua_allocate!(),
        r"
local raw = redis.call('HGETALL', KEYS[1])
if #raw == 0 then return {'gone'} end
local op = {}
for i = 1, #raw, 2 do op[raw[i]] = raw[i + 1] end
local status = op.status
if status ~= 'queued' and status ~= 'running' then return {'final', status or ''} end
local inst = redis.call('HMGET', KEYS[2], 'data', 'version', 'desired', 'generation', 'updatedAt')
if not inst[1] then return {'no_instance'} end
local held = ARGV[5]
if tonumber(ARGV[4]) < tonumber(inst[4] or cjson.decode(inst[1]).generation) then
  redis.call('HSET', KEYS[1], 'status', 'superseded', 'finishedAt', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  redis.call('PUBLISH', ARGV[9], 'o|' .. ARGV[10])
  if held ~= '' and redis.call('GET', KEYS[6]) == held then redis.call('DEL', KEYS[6]) end
  return {'superseded'}
end
local obs = redis.call('HMGET', KEYS[4], 'data', 'version')
if ARGV[11] == '1' and obs[1] then
  local node = cjson.decode(obs[1]).node
  if node and node ~= ARGV[6] then
    return {'foreign', node, tostring(redis.call('EXISTS', ARGV[7] .. node))}
  end
end
local lease = held
if held == '' then
  if redis.call('EXISTS', KEYS[6]) == 1 then return {'busy'} end
  lease = redis.call('INCR', KEYS[7]) .. ':' .. ARGV[1]
  redis.call('SET', KEYS[6], lease, 'PX', ARGV[2])
else
  if redis.call('GET', KEYS[6]) ~= held then return {'lease_lost'} end
  redis.call('PEXPIRE', KEYS[6], ARGV[2])
end
local cfg = redis.call('HMGET', KEYS[3], 'data', 'version')
local port, owners = '', false
if ARGV[12] ~= '' then
  owners = redis.call('SMEMBERS', KEYS[10])
  local wanted = 0
  local ok, c = pcall(cjson.decode, cfg[1] or '{}')
  if ok and type(c) == 'table' and type(c.port) == 'number' then wanted = c.port end
  local skip = {}
  for i = 16, #ARGV do skip[tonumber(ARGV[i])] = true end
  port = tostring(allocate(KEYS[8], KEYS[9], ARGV[12], ARGV[15], tonumber(ARGV[13]), tonumber(ARGV[14]), wanted, skip))
end
op.attempt = tostring(tonumber(op.attempt or '0') + 1)
op.status, op.worker = 'running', ARGV[1]
op.startedAt = op.startedAt or ARGV[3]
redis.call('HSET', KEYS[1], 'status', op.status, 'worker', op.worker, 'attempt', op.attempt, 'startedAt', op.startedAt)
redis.call('EXPIRE', KEYS[1], ARGV[8])
local fields = {}
for k, v in pairs(op) do table.insert(fields, k) table.insert(fields, v) end
local probe = redis.call('HGET', KEYS[5], 'data')
return {'ok', lease, port, fields, inst, cfg[1], cfg[2], obs[1], obs[2], probe, owners,
  redis.call('HGETALL', KEYS[11])}
"
    )
);

script!(
    /// End an operation, in one step: write what was observed last (while the lease holds),
    /// make the operation final (if it still is queued or running), release the lease, and
    /// tell waiters.
    /// KEYS: op, lease, observed, history, changes, crash loop. ARGV: status, finished at, error
    /// json ('' = none), result json ('' = none), op ttl, lease value ('' = none), observed json
    /// ('' = none), observed status, instance id, at, source, reason, history cap, global cap,
    /// channel, op id, forget the crash loop ('1'), requested by ('' = none). Replies {op ended (0/1), observed written
    /// (0/1)}.
    finish = concat!(
        lua_observe!(),
        r"
local wrote = 0
if ARGV[7] ~= '' and ARGV[6] ~= '' then
  if observe(KEYS[3], KEYS[4], KEYS[5], KEYS[2], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12],
      ARGV[13], ARGV[14], ARGV[6], '', ARGV[18]) > 0 then wrote = 1 end
end
local ended = 0
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == 'queued' or cur == 'running' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finishedAt', ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) else redis.call('HDEL', KEYS[1], 'error') end
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[4]) end
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('PUBLISH', ARGV[15], 'o|' .. ARGV[16])
  ended = 1
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[2]) == ARGV[6] then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[15], 'l|' .. ARGV[9])
end
if ARGV[17] == '1' and wrote == 1 then redis.call('DEL', KEYS[6]) end
return {ended, wrote}
"
    )
);

script!(
    /// Move an operation from one of the allowed statuses to another, setting fields ('' as
    /// a value removes the field). A final status tells waiters.
    /// KEYS: op. ARGV: ttl, new status, channel, op id, tell ('1'), n, n allowed statuses,
    /// then field, value pairs. Replies 1, or 0 when the status was not allowed.
    transition = r"
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
local n = tonumber(ARGV[6])
local allowed = false
for i = 7, 6 + n do
  if cur == ARGV[i] then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 7 + n, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[5] == '1' then redis.call('PUBLISH', ARGV[3], 'o|' .. ARGV[4]) end
return 1
"
);

script!(
    /// Extend or release a held lease or lock, or say it was lost.
    /// KEYS: lease. ARGV: value, ttl ms (0 = release), channel, message on release ('' = none).
    keep = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
  if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"
);

script!(
    /// Allocate a port (see `allocate` above) to an owner: an instance id, or a listening
    /// component of one (`<id>/sources/<component>`), noted in the instance's set of owners.
    /// KEYS: ports (`node|port` → owner), by-owner (owner → `node|port`), the instance's owners.
    /// ARGV: pool, owner, first, last, wanted (0 = any), then ports to skip.
    allocate = concat!(
        lua_allocate!(),
        r"
local skip = {}
for i = 6, #ARGV do skip[tonumber(ARGV[i])] = true end
local port = allocate(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), skip)
if port > 0 then redis.call('SADD', KEYS[3], ARGV[2]) end
return port
"
    )
);

script!(
    /// Free the ports of owners. KEYS: ports, by-owner, the instance's owners. ARGV: owners.
    release_port = r"
for _, owner in ipairs(ARGV) do
  local cur = redis.call('HGET', KEYS[2], owner)
  if cur then redis.call('HDEL', KEYS[1], cur) redis.call('HDEL', KEYS[2], owner) end
  redis.call('SREM', KEYS[3], owner)
end
return 1
"
);

script!(
    /// Decide about a failed instance: back off exponentially between repairs, give up after
    /// `max` of them until a user acts.
    /// KEYS: crash loop. ARGV: now ms, initial backoff ms, max backoff ms, max failures.
    /// Replies {'repair', attempt}, {'wait', 0}, {'give_up', 0} or {'gave_up', 0}.
    decide = r"
local c = redis.call('HMGET', KEYS[1], 'failures', 'next_at_ms', 'gave_up')
if c[3] == '1' then return {'gave_up', 0} end
local now = tonumber(ARGV[1])
if now < tonumber(c[2] or '0') then return {'wait', 0} end
local failures = tonumber(c[1] or '0')
if failures >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'gave_up', 1)
  return {'give_up', 0}
end
local attempt = failures + 1
local wait = math.min(tonumber(ARGV[2]) * 2 ^ math.min(attempt - 1, 20), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'failures', attempt, 'next_at_ms', string.format('%d', now + wait))
return {'repair', attempt}
"
);

script!(
    /// Forget finished tasks of a queue older than a cutoff: their data, meta and set
    /// membership (apalis-redis keeps them forever).
    /// KEYS: data hash, done set, dead set. ARGV: meta prefix, cutoff (unix s), max per call.
    vacuum = r"
local removed = 0
for _, set in ipairs({KEYS[2], KEYS[3]}) do
  local ids = redis.call('SRANDMEMBER', set, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    local meta = ARGV[1] .. ':' .. id
    local done_at = tonumber(redis.call('HGET', meta, 'done_at') or '0')
    if done_at <= tonumber(ARGV[2]) then
      redis.call('HDEL', KEYS[1], id)
      redis.call('DEL', meta)
      redis.call('SREM', set, id)
      removed = removed + 1
    end
  end
end
return removed
"
);

script!(
    /// Drop the oldest ids of an operation index whose records expired (ids are time-ordered).
    /// KEYS: index. ARGV: record key prefix, max per call.
    trim = r"
local removed = 0
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then break end
  redis.call('ZREM', KEYS[1], id)
  removed = removed + 1
end
return removed
"
);
