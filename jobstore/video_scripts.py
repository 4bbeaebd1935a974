"""The Lua scripts of video jobs (their calls and replies are ``jobstore.videos``).

A video is a record that is never queued itself; its segments are records the fair queue runs
like photos (``jobstore.queue_scripts``: CLAIM, RENEW and EXPIRE treat them as any job), and once
they all succeeded, its join. What must be all-or-nothing runs as one script:

- ``ADMIT_VIDEO`` (gateway): the video's segments fit under the queue depth and the client's
  quota together, or none is queued (as ``ADMIT_BATCH``); then the record, the probe and every
  segment are created, in order, at the end of the client's line (``create_job``).
- ``STARTED`` (worker, after claiming a segment or the join): the video turns ``running`` at its
  first claim (``started_at``, ``queue_s``); every claim is announced on the video's channel, so
  its event streams show the segment that started.
- ``SEGMENT_DONE`` (worker): the segment ends ``succeeded`` (it leaves its lease and the client's
  quota), the video counts its frames and its engine seconds, and the last segment to end queues
  the join at the head of the client's line (it counts against the quota like a segment). A
  segment whose video ended meanwhile (failed, deleted) answers ``orphan``: its piece is dropped.
"""

from __future__ import annotations

from jobstore.queue_scripts import LUA_CREATE, LUA_KEYS

ADMIT_VIDEO = (
    LUA_KEYS
    + LUA_CREATE
    + """
-- KEYS: waiting, round, active, video job, probe
-- ARGV: id, client, max_depth, max_per_client, input_ttl, record_ttl, segments, probe JSON,
--       video field count, video fields..., then per segment: id, field count, fields...
local client, record_ttl, n = ARGV[2], ARGV[6], tonumber(ARGV[7])
local depth = redis.call('LLEN', KEYS[1])
if depth + n > tonumber(ARGV[3]) then return {'queue-full', tostring(depth)} end
local mine = active_count(client)
if mine + n > tonumber(ARGV[4]) then return {'client-quota', tostring(mine)} end
local count = tonumber(ARGV[9])
redis.call('HSET', KEYS[4], unpack(ARGV, 10, 9 + count))
redis.call('EXPIRE', KEYS[4], record_ttl)
redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[5])
local at = 10 + count
for _ = 1, n do
  local id, fields = ARGV[at], tonumber(ARGV[at + 1])
  create_job(id, client, ARGV[5], record_ttl, '', {unpack(ARGV, at + 2, at + 1 + fields)})
  at = at + 2 + fields
end
return {'created', tostring(depth + n)}
"""
)

STARTED = (
    LUA_KEYS
    + """
-- KEYS: video job.  ARGV: video id, now.  Returns the video's state after the claim.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' then
  local waited = tonumber(ARGV[2]) - tonumber(redis.call('HGET', KEYS[1], 'created_at'))
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'queue_s', tostring(math.max(0, waited)))
  state = 'running'
end
if state == 'running' then publish(ARGV[1], 'running') end
return state or ''
"""
)

SEGMENT_DONE = (
    LUA_KEYS
    + """
-- KEYS: waiting, round, leases, video job, segment job
-- ARGV: segment id, video id, holder, now, inference seconds, join id, join field count, join fields...
local seg, video = KEYS[5], KEYS[4]
if redis.call('HGET', seg, 'holder') ~= ARGV[3] or redis.call('HGET', seg, 'state') ~= 'running' then
  return {'lost'}
end
local client = redis.call('HGET', seg, 'client')
redis.call('HSET', seg, 'state', 'succeeded', 'finished_at', ARGV[4], 'inference_s', ARGV[5])
redis.call('EXPIRE', seg, redis.call('HGET', seg, 'record_ttl_s'))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', active_k(client), ARGV[1])
publish(ARGV[1], 'succeeded')
local state = redis.call('HGET', video, 'state')
if state ~= 'running' and state ~= 'queued' then return {'orphan'} end
redis.call('HINCRBY', video, 'frames_done', redis.call('HGET', seg, 'frames'))
redis.call('HINCRBYFLOAT', video, 'inference_s', ARGV[5])
local done = redis.call('HINCRBY', video, 'segments_done', 1)
publish(ARGV[2], 'running')
if done < tonumber(redis.call('HGET', video, 'segments')) then return {'done'} end
-- The last segment: the join goes first in the client's line (the clip's work is all but done).
local id, count = ARGV[6], tonumber(ARGV[7])
redis.call('HSET', job_k(id), unpack(ARGV, 8, 7 + count))
redis.call('EXPIRE', job_k(id), redis.call('HGET', video, 'record_ttl_s'))
redis.call('RPUSH', KEYS[1], id)
redis.call('LPUSH', cq_k(client), id)
if not redis.call('LPOS', KEYS[2], client) then redis.call('RPUSH', KEYS[2], client) end
redis.call('SADD', active_k(client), id)
return {'join'}
"""
)
