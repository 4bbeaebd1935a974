"""The fair job queue's Lua scripts (their calls and replies are ``jobstore.queue``).

Every change that must be all-or-nothing runs as one Lua script, so concurrent gateways and
workers never see half of it:

- ``ADMIT`` (gateway): replays an Idempotency-Key, answers from the client's own identical job
  (dedup), checks the global depth and the client's quota, and only then stores the input and the
  record and queues the job: 100 concurrent submits never pass either limit.
- ``ADMIT_BATCH`` (gateway): the jobs of a batch (``jobstore.batches``), all or none: the depth
  plus the batch and the client's jobs plus the batch must fit, then every job is created as ADMIT
  creates one (the shared ``create_job``), in file order, with no dedup or idempotency.
- ``CLAIM`` (worker): takes the next job round-robin across the clients with waiting jobs (each
  client's jobs in order), marks it running and leases it to the claiming process. A Celery
  message is only a token ("one job is waiting"): whichever job is fairest runs, and a token
  that finds nothing (a duplicate delivery, a job already cancelled) is dropped unrun.
- ``RENEW`` (worker, every few seconds while a job runs) and ``EXPIRE`` (the sweeper, for a lease
  nobody renewed: its process is gone) put a job whose worker vanished back at the head of its
  client's line, or report it exhausted once it has used its attempts.
- ``POSITION`` (gateway): how many jobs start before this one under round-robin, assuming no
  newcomer: ``i`` of the client's own plus, of every other client, ``min(its jobs, i)`` and one
  more if that client's turn comes first.

Redis Cluster is not supported: the scripts name keys derived from the client and job ids.
"""

from __future__ import annotations

from jobstore.keys import PREFIX

# Shared by the scripts: key names built the way jobstore.keys builds them.
LUA_KEYS = f"""
local P = '{PREFIX}'
local function job_k(id) return P .. 'job:' .. id end
local function cq_k(client) return P .. 'cq:' .. client end
local function active_k(client) return P .. 'active:' .. client end
local function publish(id, state) redis.call('PUBLISH', P .. 'events:' .. id, state) end
"""

# Shared by ADMIT and ADMIT_BATCH: the client's quota count and the creation of one queued job,
# so a job created alone and a job created in a batch are the same keys, lines and TTLs.
LUA_CREATE = """
-- The client's jobs queued or running; members whose job ended without a terminal write (record
-- expired) free their slot here.
local function active_count(client)
  local active = active_k(client)
  for _, other in ipairs(redis.call('SMEMBERS', active)) do
    local state = redis.call('HGET', job_k(other), 'state')
    if state ~= 'queued' and state ~= 'running' then redis.call('SREM', active, other) end
  end
  return redis.call('SCARD', active)
end
-- Store the input (unless it is in the object store: raw is empty then) and the record, and queue
-- the job at the end of its client's line.
local function create_job(id, client, input_ttl, record_ttl, raw, fields)
  if raw ~= '' then redis.call('SET', P .. 'input:' .. id, raw, 'EX', input_ttl) end
  redis.call('HSET', job_k(id), unpack(fields))
  redis.call('EXPIRE', job_k(id), record_ttl)
  redis.call('RPUSH', P .. 'waiting', id)
  redis.call('RPUSH', cq_k(client), id)
  if not redis.call('LPOS', P .. 'round', client) then redis.call('RPUSH', P .. 'round', client) end
  redis.call('SADD', active_k(client), id)
  redis.call('EXPIRE', active_k(client), record_ttl)
end
"""

ADMIT = (
    LUA_KEYS
    + LUA_CREATE
    + """
-- KEYS: waiting, cq, round, active, job, input, dedup(pixels), dedup(upload), [idem]
-- ARGV: id, client, max_depth, max_per_client, input_ttl, record_ttl, raw, fingerprint, idem_value, dedup (1/0),
--       fields...
local id, client, record_ttl = ARGV[1], ARGV[2], ARGV[6]
local function can_answer(other)
  local state = redis.call('HGET', job_k(other), 'state')
  if not state or state == 'failed' then return false end
  if state == 'succeeded' then
    if redis.call('HGET', job_k(other), 'blobs') == 's3' then
      -- In the object store: the result exists while its deletion is scheduled in the future.
      local due = redis.call('ZSCORE', P .. 'blobs:due', 'result/' .. other)
      return due ~= false and tonumber(due) > tonumber(redis.call('TIME')[1])
    end
    return redis.call('EXISTS', P .. 'result:' .. other) == 1
  end
  return true
end
local function remember(answer)
  if ARGV[10] == '1' then redis.call('SET', KEYS[8], answer, 'EX', record_ttl) end
  if KEYS[9] then redis.call('SET', KEYS[9], string.gsub(ARGV[9], '{JOB}', answer), 'EX', record_ttl) end
end
if KEYS[9] then
  local stored = redis.call('GET', KEYS[9])
  if stored then
    local seen = cjson.decode(stored)
    if seen['fingerprint'] ~= ARGV[8] then return {'idempotency-key-reused', ''} end
    return {'replayed', seen['job_id']}
  end
end
-- A job announced to its own callback never answers for another request, nor is answered by one.
for _, key in ipairs(ARGV[10] == '1' and {KEYS[7], KEYS[8]} or {}) do
  local other = redis.call('GET', key)
  if other and can_answer(other) then
    remember(other)
    return {'deduplicated', other}
  end
end
local depth = redis.call('LLEN', KEYS[1])
if depth >= tonumber(ARGV[3]) then return {'queue-full', '', tostring(depth)} end
local mine = active_count(client)
if mine >= tonumber(ARGV[4]) then return {'client-quota', '', tostring(mine)} end
create_job(id, client, ARGV[5], record_ttl, ARGV[7], {unpack(ARGV, 11)})
if ARGV[10] == '1' then redis.call('SET', KEYS[7], id, 'EX', record_ttl) end
remember(id)
return {'created', id, tostring(depth + 1)}
"""
)

ADMIT_BATCH = (
    LUA_KEYS
    + LUA_CREATE
    + """
-- KEYS: waiting, round, active, batch, pending (named for the reader; the script derives them too)
-- ARGV: batch id, client, max_depth, max_per_client, input_ttl, record_ttl, jobs,
--       then per job: id, raw, field count, fields..., then the batch's field/value pairs.
-- All or nothing: every job fits under both limits and all are queued, in order, or none is.
local batch, client, record_ttl, n = ARGV[1], ARGV[2], ARGV[6], tonumber(ARGV[7])
local depth = redis.call('LLEN', KEYS[1])
if depth + n > tonumber(ARGV[3]) then return {'queue-full', tostring(depth)} end
local mine = active_count(client)
if mine + n > tonumber(ARGV[4]) then return {'client-quota', tostring(mine)} end
local at = 8
for _ = 1, n do
  local id, raw, count = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  local fields = {unpack(ARGV, at + 3, at + 2 + count)}
  table.insert(fields, 'batch')
  table.insert(fields, batch)
  create_job(id, client, ARGV[5], record_ttl, raw, fields)
  redis.call('SADD', KEYS[5], id)
  at = at + 3 + count
end
redis.call('HSET', KEYS[4], unpack(ARGV, at))
redis.call('EXPIRE', KEYS[4], record_ttl)
redis.call('EXPIRE', KEYS[5], record_ttl)
return {'created', tostring(depth + n)}
"""
)

CLAIM = (
    LUA_KEYS
    + """
-- KEYS: waiting, round, leases.  ARGV: holder, now, lease_until, max_attempts
-- Bounded: each pass drops a stale entry (a job that expired or ended while waiting).
for _ = 1, 1000 do
  local client = redis.call('LPOP', KEYS[2])
  if not client then return false end
  local id = redis.call('LPOP', cq_k(client))
  if redis.call('LLEN', cq_k(client)) > 0 then redis.call('RPUSH', KEYS[2], client) end
  if id then
    redis.call('LREM', KEYS[1], 1, id)
    local key = job_k(id)
    if redis.call('HGET', key, 'state') == 'queued' then
      local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0') + 1
      if attempts > tonumber(ARGV[4]) then return {'exhausted', id} end
      redis.call('HSET', key, 'state', 'running', 'attempts', tostring(attempts), 'started_at', ARGV[2],
        'holder', ARGV[1])
      if redis.call('HEXISTS', key, 'queue_s') == 0 then
        local waited = tonumber(ARGV[2]) - tonumber(redis.call('HGET', key, 'created_at'))
        redis.call('HSET', key, 'queue_s', tostring(math.max(0, waited)))
      end
      redis.call('EXPIRE', key, redis.call('HGET', key, 'record_ttl_s'))
      redis.call('ZADD', KEYS[3], ARGV[3], id)
      publish(id, 'running')
      return {'claimed', id}
    end
  end
end
return false
"""
)

RENEW = """
-- KEYS: leases, job.  ARGV: id, holder, lease_until.  1 while the lease is still ours.
if redis.call('HGET', KEYS[2], 'holder') ~= ARGV[2] or redis.call('HGET', KEYS[2], 'state') ~= 'running' then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

EXPIRE = (
    LUA_KEYS
    + """
-- KEYS: waiting, round, leases.  ARGV: id, now, max_attempts, [holder].
-- Hands back a running job whose lease passed (or, with a holder, whose process is known dead).
local id = ARGV[1]
local key = job_k(id)
local until_ = redis.call('ZSCORE', KEYS[3], id)
if not until_ then return {'gone', ''} end
if ARGV[4] then
  if redis.call('HGET', key, 'holder') ~= ARGV[4] then return {'kept', ''} end
elseif tonumber(until_) > tonumber(ARGV[2]) then
  return {'kept', ''}
end
redis.call('ZREM', KEYS[3], id)
if redis.call('HGET', key, 'state') ~= 'running' then return {'gone', ''} end
local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then return {'exhausted', tostring(attempts)} end
local client = redis.call('HGET', key, 'client')
redis.call('HSET', key, 'state', 'queued')
redis.call('HDEL', key, 'holder', 'started_at')
-- Back at the head of the line, its client's turn next: the job had its turn and lost it to a crash.
redis.call('LPUSH', KEYS[1], id)
redis.call('LPUSH', cq_k(client), id)
redis.call('LREM', KEYS[2], 0, client)
redis.call('LPUSH', KEYS[2], client)
publish(id, 'queued')
return {'requeued', tostring(attempts)}
"""
)

POSITION = (
    LUA_KEYS
    + """
-- KEYS: round.  ARGV: id, client.  1 for the next job to start; false when not waiting.
local own = redis.call('LPOS', cq_k(ARGV[2]), ARGV[1])
if not own then return false end
local ahead = own
local before = true
for _, other in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if other == ARGV[2] then
    before = false
  else
    local extra = before and 1 or 0
    ahead = ahead + math.min(redis.call('LLEN', cq_k(other)), own + extra)
  end
end
return ahead + 1
"""
)
