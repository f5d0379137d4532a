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
/// every run-at to now, and its fetch promotes due ids). `ready` and `scheduled` are the
/// lengths of the queue's ready list and scheduled set when the caller read them already
/// (nil: read here). Then, when the queue had nothing due
/// (no id in its ready list, none due in its scheduled set), every worker of the deployment
/// is told which queue has work, so an idle one fetches at once instead of at its next poll.
/// A queue that had work due needs no word: an apalis worker stops fetching (and waits for
/// a word or its poll) only after a fetch that found nothing, and the push that ended that
/// emptiness was announced; so under load a push costs no notification.
/// `tests/tests/queue_layout.rs` checks the layout against apalis' own push.
macro_rules! lua_push_job {
    () => {
        r"
local function push_job(data_key, meta_prefix, scheduled_key, active_key, task_id, job, now, channel, queue, ready, scheduled)
  if redis.call('HSETNX', data_key, task_id, job) == 0 then return 0 end
  ready = ready or redis.call('LLEN', active_key)
  scheduled = scheduled or redis.call('ZCARD', scheduled_key)
  local idle = ready == 0 and (scheduled == 0 or redis.call('ZCOUNT', scheduled_key, '-inf', now) == 0)
  redis.call('HSET', meta_prefix .. ':' .. task_id, 'attempts', '0', 'max_attempts', '25', 'status', 'Pending', 'idempotency_key', '')
  redis.call('ZADD', scheduled_key, now, task_id)
  if idle then redis.call('PUBLISH', channel, 'w|' .. queue) end
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

/// `begin_op(K, A, skip)`: the body of `begin` (see there) over a key list `K` and an
/// argument list `A` laid out as its KEYS and ARGV, and the ports to skip as a set; so
/// `take` begins the operations it delivers exactly as `begin` does.
macro_rules! lua_begin {
    () => {
        r"
local function begin_op(K, A, skip)
  local raw = redis.call('HGETALL', K[1])
  if #raw == 0 then return {'gone'} end
  local op = {}
  for i = 1, #raw, 2 do op[raw[i]] = raw[i + 1] end
  local status = op.status
  if status ~= 'queued' and status ~= 'running' then return {'final', status or ''} end
  local inst = redis.call('HMGET', K[2], 'data', 'version', 'desired', 'generation', 'updatedAt')
  if not inst[1] then return {'no_instance'} end
  local held = A[5]
  if tonumber(A[4]) < tonumber(inst[4] or cjson.decode(inst[1]).generation) then
    redis.call('HSET', K[1], 'status', 'superseded', 'finishedAt', A[3])
    redis.call('EXPIRE', K[1], A[8])
    redis.call('PUBLISH', A[9], 'o|' .. A[10])
    if held ~= '' and redis.call('GET', K[6]) == held then redis.call('DEL', K[6]) end
    return {'superseded'}
  end
  local obs = redis.call('HMGET', K[4], 'data', 'version')
  if A[11] == '1' and obs[1] then
    local node = cjson.decode(obs[1]).node
    if node and node ~= A[6] then
      return {'foreign', node, tostring(redis.call('EXISTS', A[7] .. node))}
    end
  end
  local lease = held
  if held == '' then
    lease = redis.call('INCR', K[7]) .. ':' .. A[1]
    if not redis.call('SET', K[6], lease, 'NX', 'PX', A[2]) then return {'busy'} end
  else
    if redis.call('GET', K[6]) ~= held then return {'lease_lost'} end
    redis.call('PEXPIRE', K[6], A[2])
  end
  local cfg = redis.call('HMGET', K[3], 'data', 'version')
  local port, owners = '', false
  if A[12] ~= '' then
    owners = redis.call('SMEMBERS', K[10])
    local wanted = 0
    local ok, c = pcall(cjson.decode, cfg[1] or '{}')
    if ok and type(c) == 'table' and type(c.port) == 'number' then wanted = c.port end
    port = tostring(allocate(K[8], K[9], A[12], A[15], tonumber(A[13]), tonumber(A[14]), wanted, skip))
  end
  op.attempt = tostring(tonumber(op.attempt or '0') + 1)
  op.status, op.worker = 'running', A[1]
  op.startedAt = op.startedAt or A[3]
  redis.call('HSET', K[1], 'status', op.status, 'worker', op.worker, 'attempt', op.attempt, 'startedAt', op.startedAt)
  redis.call('EXPIRE', K[1], A[8])
  local fields = {}
  for k, v in pairs(op) do table.insert(fields, k) table.insert(fields, v) end
  local probe = redis.call('HGET', K[5], 'data')
  return {'ok', lease, port, fields, inst, cfg[1], cfg[2], obs[1], obs[2], probe, owners,
    redis.call('HGETALL', K[11])}
end
"
    };
}

/// `finish_op(K, A)`: end an operation, in one step: write what was observed last (while the
/// lease holds), make the operation final (if it still is queued or running), release the
/// lease, and tell waiters (in one message when both happened).
/// K: op, lease, observed, history, changes, crash loop. A: status, finished at, error json
/// ('' = none), result json ('' = none), op ttl, lease value ('' = none), observed json ('' =
/// none), observed status, instance id, at, source, reason, history cap, global cap, channel,
/// op id, forget the crash loop ('1'), requested by ('' = none) (`Operations::finish_args`).
/// Returns {op ended (0/1), observed written (0/1)}.
macro_rules! lua_finish {
    () => {
        r"
local function finish_op(K, A)
  local wrote = 0
  if A[7] ~= '' and A[6] ~= '' then
    if observe(K[3], K[4], K[5], K[2], A[7], A[8], A[9], A[10], A[11], A[12],
        A[13], A[14], A[6], '', A[18]) > 0 then wrote = 1 end
  end
  local ended = 0
  local cur = redis.call('HMGET', K[1], 'status', 'attempt')
  if cur[1] == 'queued' or cur[1] == 'running' then
    local fields = {'status', A[1], 'finishedAt', A[2]}
    if A[3] ~= '' then table.insert(fields, 'error') table.insert(fields, A[3]) end
    if A[4] ~= '' then table.insert(fields, 'result') table.insert(fields, A[4]) end
    redis.call('HSET', K[1], unpack(fields))
    -- An earlier attempt's error (kept while it was retried) goes with a success.
    if A[3] == '' and (tonumber(cur[2]) or 0) > 1 then redis.call('HDEL', K[1], 'error') end
    redis.call('EXPIRE', K[1], A[5])
    ended = 1
  end
  local released = A[6] ~= '' and redis.call('GET', K[2]) == A[6]
  if released then redis.call('DEL', K[2]) end
  if ended == 1 and released then
    redis.call('PUBLISH', A[15], 'e|' .. A[16] .. '|' .. A[9])
  elseif ended == 1 then
    redis.call('PUBLISH', A[15], 'o|' .. A[16])
  elseif released then
    redis.call('PUBLISH', A[15], 'l|' .. A[9])
  end
  if A[17] == '1' and wrote == 1 then redis.call('DEL', K[6]) end
  return {ended, wrote}
end
"
    };
}

/// `instance_keys(tag, op, id)`: the keys of operation `op` on instance `id` that `begin_op`
/// and `finish_op` take, named as `store::keys` names them (a unit test holds the two
/// together): op, instance, config, observed, probe, lease, fence, ports, port-by-instance,
/// port owners, secrets, history, changes, crash loop.
macro_rules! lua_instance_keys {
    () => {
        r"
local function instance_keys(tag, op, id)
  return {
    op = tag .. ':op:' .. op, instance = tag .. ':instance:' .. id, config = tag .. ':config:' .. id,
    observed = tag .. ':observed:' .. id, probe = tag .. ':probe:' .. id, lease = tag .. ':lease:' .. id,
    fence = tag .. ':fence:' .. id, ports = tag .. ':ports', port_by_instance = tag .. ':port-by-instance',
    port_owners = tag .. ':port-owners:' .. id, secrets = tag .. ':secrets:' .. id,
    history = tag .. ':history:' .. id, changes = tag .. ':changes', crash_loop = tag .. ':crashloop:' .. id,
  }
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
    /// task id, now (RFC 3339), requested by, instance id.
    /// Replies {'ok', queue, target generation, previous desired state, instance version},
    /// {'not_found'}, {'precondition', version}, {'stale', generation}, {'deleting'} or
    /// {'queue_full', queue, depth}.
    submit = concat!(
        lua_push_job!(),
        r"
local inst = redis.call('HMGET', KEYS[1], 'version', 'desired', 'generation', 'platform')
if not inst[1] then return {'not_found'} end
if ARGV[13] ~= '' and inst[1] ~= ARGV[13] then return {'precondition', inst[1]} end
local current, generation, platform = inst[2], tonumber(inst[3]), inst[4]
if not (current and generation and platform) then
  local rec = cjson.decode(redis.call('HGET', KEYS[1], 'data'))
  current = current or rec.desiredState
  generation = generation or tonumber(rec.generation)
  platform = platform or rec.platform
end
local id = ARGV[20]
if ARGV[14] ~= '' and generation ~= tonumber(ARGV[14]) then return {'stale', tostring(generation)} end
local kind = ARGV[3]
if current == 'deleted' and kind ~= 'delete' then return {'deleting'} end
local desired = ({start = 'running', restart = 'running', stop = 'stopped', delete = 'deleted'})[kind] or current
local queue = 'shared'
if platform == 'process' then
  local obs = redis.call('HGET', KEYS[2], 'data')
  local node = obs and cjson.decode(obs).node
  if node then queue = 'node-' .. node end
end
local qkey = ARGV[12] .. queue
local ready, scheduled = redis.call('LLEN', qkey .. ':active'), redis.call('ZCARD', qkey .. ':scheduled')
if ready + scheduled >= tonumber(ARGV[9]) then return {'queue_full', queue, tostring(ready + scheduled)} end
local version = inst[1]
if desired ~= current or kind == 'restart' then
  generation = generation + 1
  redis.call('HSET', KEYS[1], 'desired', desired, 'generation', generation, 'updatedAt', ARGV[18])
  version = tostring(redis.call('HINCRBY', KEYS[1], 'version', 1))
  redis.call('PUBLISH', ARGV[11], 'g|' .. id .. '|' .. generation)
end
local spec = cjson.encode({id = ARGV[2], kind = kind, instanceId = id, maxAttempts = tonumber(ARGV[7]),
  createdAt = ARGV[6], targetGeneration = generation, correlationId = ARGV[5], reason = ARGV[4], queue = queue,
  previousDesired = current, force = ARGV[8] == '1', requestedBy = ARGV[19]})
redis.call('HSET', KEYS[3], 'spec', spec, 'status', 'queued', 'attempt', '0')
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], '0', ARGV[2])
redis.call('ZADD', KEYS[5], '0', ARGV[2])
if ARGV[15] == '1' then redis.call('DEL', KEYS[6]) end
local job = cjson.encode({schemaVersion = tonumber(ARGV[16]), kind = kind, instanceId = id, operationId = ARGV[2],
  targetGeneration = generation, correlationId = ARGV[5], platform = platform})
push_job(qkey .. ':data', qkey .. ':meta', qkey .. ':scheduled', qkey .. ':active', ARGV[17], job, ARGV[10], ARGV[11], queue,
  ready, scheduled)
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
push_job(KEYS[3], ARGV[10], KEYS[4], KEYS[5], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return {'ok'}
"
    )
);

script!(
    /// Push a job without an operation (reconcile ticks, a job forwarded to its node).
    /// KEYS: queue data, queue scheduled, queue active. ARGV: task id, job json, now (unix s), meta prefix,
    /// channel, queue name. Replies 1, or 0 when the task id exists.
    push = concat!(
        lua_push_job!(),
        r"
return push_job(KEYS[1], ARGV[4], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6])
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
push_job(KEYS[2], ARGV[5], KEYS[3], KEYS[4], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[7])
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
        lua_begin!(),
        r"
local skip = {}
for i = 16, #ARGV do skip[tonumber(ARGV[i])] = true end
return begin_op(KEYS, ARGV, skip)
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

script!(
    /// Take up to `n` jobs of a queue for an apalis worker and begin their operations, in one
    /// step: apalis-redis' fetch (promote due ids of the scheduled set, a thousand at most;
    /// move up to `n` ids of the ready list to the worker's in-flight set) and, for each job
    /// that needs no port (every kind but start, restart and reconfigure, whose port only the
    /// worker can choose), `begin` (see there) as the worker would have run it first.
    /// A job whose data is gone is dropped (it never enters the in-flight set).
    /// KEYS: workers, ready list, the worker's in-flight set, data, scheduled. ARGV: now (unix
    /// s), n, apalis worker name, meta prefix, key tag, newest job schema, then `begin`'s
    /// holder, lease ttl ms, now (RFC 3339), own node, node key prefix, op ttl, channel.
    /// Replies {task id, job json, attempts, begin's reply or nil} per job, or an error when
    /// the worker is not registered (apalis then restarts it, which registers it anew).
    take = concat!(
        lua_allocate!(),
        lua_begin!(),
        lua_instance_keys!(),
        r"
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return redis.error_reply('worker not registered') end
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('RPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[5], unpack(due))
end
local ids = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)
if #ids == 0 then return {} end
redis.call('LTRIM', KEYS[2], #ids, -1)
local data = redis.call('HMGET', KEYS[4], unpack(ids))
local ports = {start = true, restart = true, reconfigure = true}
local out = {}
for i, tid in ipairs(ids) do
  local job = data[i]
  if job then
    redis.call('SADD', KEYS[3], tid)
    local attempts = redis.call('HGET', ARGV[4] .. ':' .. tid, 'attempts') or '0'
    local begun = false
    local ok, j = pcall(cjson.decode, job)
    if ok and type(j) == 'table' and type(j.operationId) == 'string' and type(j.instanceId) == 'string'
        and type(j.targetGeneration) == 'number' and not ports[j.kind]
        and (tonumber(j.schemaVersion) or 0) <= tonumber(ARGV[6]) then
      local k = instance_keys(ARGV[5], j.operationId, j.instanceId)
      local placed = '0'
      if j.platform == nil or j.platform == 'process' then placed = '1' end
      begun = begin_op(
        {k.op, k.instance, k.config, k.observed, k.probe, k.lease, k.fence, k.ports, k.port_by_instance,
          k.port_owners, k.secrets},
        {ARGV[7], ARGV[8], ARGV[9], j.targetGeneration, '', ARGV[10], ARGV[11], ARGV[12], ARGV[13],
          j.operationId, placed, '', 0, 0, j.instanceId},
        {})
    end
    table.insert(out, {tid, job, attempts, begun})
  end
end
return out
"
    )
);

script!(
    /// Acknowledge jobs an apalis worker ran and end their operations, in one step: per job,
    /// apalis-redis' acknowledgement (out of the in-flight set; `Done` into the done set,
    /// `Failed` or `Pending` back into the scheduled set `attempt` seconds on, up to attempt
    /// 25 as apalis does, anything else into the dead set; the result in its meta hash), then,
    /// when the worker ended the operation, `finish_op` (see there).
    /// KEYS: the worker's in-flight set, done, dead, scheduled. ARGV: meta prefix, now (unix
    /// s), key tag, then per job: task id, status, attempt, result json, operation id ('' =
    /// no finish), instance id, n, then n arguments of `finish_op`. Replies the jobs acknowledged.
    ack = concat!(
        lua_observe!(),
        lua_finish!(),
        lua_instance_keys!(),
        r"
local acked, i = 0, 4
while i <= #ARGV do
  local tid, status, attempt, result = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]) or 0, ARGV[i + 3]
  local op, id, n = ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6])
  -- A job handed to another worker meanwhile (this one was taken for dead) is that one's.
  if redis.call('SREM', KEYS[1], tid) == 1 then
    if status == 'Done' then
      redis.call('SADD', KEYS[2], tid)
    elseif (status == 'Failed' or status == 'Pending') and attempt < 25 then
      redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + attempt, tid)
    else
      redis.call('SADD', KEYS[3], tid)
    end
    redis.call('HSET', ARGV[1] .. ':' .. tid, 'result', result, 'status', status, 'attempts', attempt, 'done_at', ARGV[2])
    acked = acked + 1
  end
  if op ~= '' then
    local k = instance_keys(ARGV[3], op, id)
    local a = {}
    for j = 1, n do a[j] = ARGV[i + 6 + j] end
    finish_op({k.op, k.lease, k.observed, k.history, k.changes, k.crash_loop}, a)
  end
  i = i + 7 + n
end
return acked
"
    )
);

script!(
    /// Register an apalis worker (as apalis-redis does): refused while a worker of that name
    /// heartbeated within `threshold` seconds; the jobs a dead one of that name left in flight
    /// go back to the ready list first.
    /// KEYS: workers, ready list, the worker's in-flight set. ARGV: now (unix s), name,
    /// threshold (s). Replies the jobs put back, or an error.
    register_worker = r"
local last = redis.call('ZSCORE', KEYS[1], ARGV[2])
if last and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[3]) then
  return redis.error_reply('worker is still active within threshold')
end
local left = redis.call('SMEMBERS', KEYS[3])
if #left > 0 then
  redis.call('RPUSH', KEYS[2], unpack(left))
  redis.call('DEL', KEYS[3])
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return #left
"
);

script!(
    /// An apalis worker's heartbeat: note it, then hand the jobs of workers silent since
    /// `expired` back to the ready list (and forget those workers).
    /// KEYS: workers, ready list. ARGV: now (unix s), name, expired (unix s), in-flight prefix.
    /// Replies the jobs handed back, or an error when the worker is not registered.
    heartbeat = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return redis.error_reply('worker not registered') end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local moved = 0
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])) do
  local set = ARGV[4] .. ':' .. w
  local jobs = redis.call('SMEMBERS', set)
  if #jobs > 0 then
    redis.call('RPUSH', KEYS[2], unpack(jobs))
    redis.call('DEL', set)
    moved = moved + #jobs
  end
  redis.call('ZREM', KEYS[1], w)
end
return moved
"
);

script!(
    /// Give back jobs an apalis worker took but will not run (it stops): out of its in-flight
    /// set, back to the front of the ready list, their operations back to `queued` and the
    /// leases their `take` took released, so the next worker begins them at once.
    /// KEYS: the worker's in-flight set, ready list. ARGV: key tag, channel, then per job: task
    /// id, operation id ('' = not begun), instance id, lease. Replies the jobs given back.
    give_back = concat!(
        lua_instance_keys!(),
        r"
local back = 0
for i = 3, #ARGV, 4 do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    back = back + 1
  end
  if ARGV[i + 1] ~= '' then
    local k = instance_keys(ARGV[1], ARGV[i + 1], ARGV[i + 2])
    if redis.call('HGET', k.op, 'status') == 'running' then redis.call('HSET', k.op, 'status', 'queued') end
    if redis.call('GET', k.lease) == ARGV[i + 3] then
      redis.call('DEL', k.lease)
      redis.call('PUBLISH', ARGV[2], 'l|' .. ARGV[i + 2])
    end
  end
end
return back
"
    )
);
