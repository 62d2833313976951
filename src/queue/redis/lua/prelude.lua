-- Prelude of the per-test scripts (reserve, ack, heartbeat, release): key names, arguments and
-- helpers shared by all four. Every per-test script takes the same KEYS, in this order, so all of
-- a build's keys (one hash tag, one cluster slot) are declared:
--   KEYS[1] state      KEYS[2] workers    KEYS[3] results    KEYS[4] failures   KEYS[5] stats
--   KEYS[6] queue      KEYS[7] running    KEYS[8] leases     KEYS[9] processed  KEYS[10] requeues
--   KEYS[11] requeued-by                  KEYS[12] meta      KEYS[13] replies   KEYS[14] failed
--   KEYS[15] flaky     KEYS[16] mismatched
-- ARGV[1] generation, ARGV[2] worker, ARGV[3] session (one per process: two processes given
-- one worker id are two sessions), ARGV[4] request sequence, ARGV[5] key TTL in ms; the
-- script's own arguments follow from ARGV[6].
-- Times are Redis server time: worker clocks drift, and a worker whose clock runs ahead must not
-- take everyone's tests.
local K = {
  state = KEYS[1], workers = KEYS[2], results = KEYS[3], failures = KEYS[4], stats = KEYS[5],
  queue = KEYS[6], running = KEYS[7], leases = KEYS[8], processed = KEYS[9], requeues = KEYS[10],
  requeued_by = KEYS[11], meta = KEYS[12], replies = KEYS[13], failed = KEYS[14],
  flaky = KEYS[15], mismatched = KEYS[16],
}
local GEN, WORKER, SESSION, SEQ, TTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local touched = {}
local function touch(key) touched[key] = true end
-- Every key carries a TTL from its first write, so an abandoned build never leaks memory.
local function expire_touched()
  for key in pairs(touched) do redis.call('PEXPIRE', key, TTL) end
end

-- A worker that sees another generation must rejoin before doing anything: an abandoned or
-- replaced generation is never served from.
local function is_stale()
  return redis.call('GET', K.state) ~= 'ready:' .. GEN
end

-- A re-sent request (the reply was lost to a dropped connection) gets the reply of the first
-- delivery instead of being applied twice. A request older than the last one answered (held
-- by a blackholed connection and delivered after its re-sent copy and newer requests) is
-- superseded: applying it would hand out tests the worker never hears of. Replies are kept per
-- session, so two processes sharing a worker id never answer each other's requests.
local REPLY_TAG = SEQ .. '\n'
local function cached_reply()
  local cached = redis.call('HGET', K.replies, SESSION)
  if not cached then return nil end
  if string.sub(cached, 1, #REPLY_TAG) == REPLY_TAG then
    return string.sub(cached, #REPLY_TAG + 1)
  end
  local seq = string.match(cached, '^(%d+)\n')
  if seq and tonumber(seq) > tonumber(SEQ) then
    return cjson.encode({status = 'superseded'})
  end
  return nil
end
local function remember(reply)
  redis.call('HSET', K.replies, SESSION, REPLY_TAG .. reply)
  touch(K.replies)
end

-- Liveness is per session (`<ms>:<worker>`, or `left:<ms>:<worker>`): one process leaving or
-- dying says nothing of another that shares its worker id.
local function seen(now)
  redis.call('HSET', K.workers, SESSION, now .. ':' .. WORKER)
  touch(K.workers)
end

-- The build-wide settings and counters its leader wrote at commit. Their absence, once the
-- generation is ready, means Redis lost the build (evicted, flushed, expired): nil.
local function load_meta()
  local m = redis.call('HMGET', K.meta, 'total', 'heartbeat-timeout-ms', 'max-requeues',
    'requeue-limit', 'refreshed-at')
  if not m[1] or not m[2] then return nil end
  return {
    total = tonumber(m[1]), heartbeat_timeout = tonumber(m[2]),
    max_requeues = tonumber(m[3] or '0'), requeue_limit = tonumber(m[4] or '0'),
    refreshed_at = tonumber(m[5] or '0'),
  }
end

-- A working build keeps every key alive, including those it only reads (the queue, the
-- requeue counts, the results): all TTLs are refreshed once a quarter of the TTL has passed
-- since the last refresh, so a key can only expire once the build stopped working.
local ALL = {K.state, K.workers, K.results, K.failures, K.stats, K.queue, K.running, K.leases,
  K.processed, K.requeues, K.requeued_by, K.meta, K.replies, K.failed, K.flaky, K.mismatched}
local function refresh_if_due(meta, now)
  if now - meta.refreshed_at < TTL / 4 then return end
  for _, key in ipairs(ALL) do touch(key) end
  redis.call('HSET', K.meta, 'refreshed-at', now)
end

-- Every per-test script opens with `open` and ends with `close`, which keep, in this order,
-- the steps that make it safe to re-send and that keep keys from leaking: the cached reply of a
-- re-sent request, the staleness check, the lost-state check, liveness, the TTL refresh; then
-- the reply remembered and the TTLs of written keys set. `open` returns the context, or nil
-- and the reply to return at once.
local function close(reply, replay)
  if replay then remember(reply) end
  expire_touched()
  return reply
end
local function open(replay, alive_when_stale)
  if replay then
    local cached = cached_reply()
    if cached then return nil, cached end
  end
  local now = now_ms()
  if is_stale() then
    if alive_when_stale then seen(now) end
    return nil, close(cjson.encode({status = 'stale'}), false)
  end
  local meta = load_meta()
  if not meta then return nil, cjson.encode({status = 'lost', why = "its generation's metadata is gone"}) end
  seen(now)
  refresh_if_due(meta, now)
  return {now = now, meta = meta}
end

-- A lease entry names both the lease number and its holder.
local function lease_value(lease) return lease .. ':' .. WORKER end
local function holds(test, lease) return redis.call('HGET', K.leases, test) == lease_value(lease) end

-- Whether another session than this one was heard from within the heartbeat timeout.
local function others_alive(now, heartbeat_timeout)
  local all = redis.call('HGETALL', K.workers)
  for i = 1, #all, 2 do
    local last = tonumber(string.match(all[i + 1], '^(%d+):'))
    if all[i] ~= SESSION and last and now - last < heartbeat_timeout then return true end
  end
  return false
end

-- A final outcome, counted once in the generation's counters; the failing ones are also kept
-- in sets, so the summary lists them without reading every result.
local function count(test, outcome)
  redis.call('HINCRBY', K.meta, 'n:' .. outcome, 1)
  if outcome == 'failed' or outcome == 'errored' then
    redis.call('SADD', K.failed, test)
    touch(K.failed)
  elseif outcome == 'flaky' then
    redis.call('SADD', K.flaky, test)
    touch(K.flaky)
  end
end

-- Marks `test` processed with `outcome`, unless the build already decided it (in this
-- generation or an earlier one): then the earlier outcome stands and is what this generation
-- counts (`outcome` may then be nil). Returns the outcome recorded, or 'duplicate'.
local function decide(test, outcome)
  if redis.call('SADD', K.processed, test) == 0 then return 'duplicate' end
  touch(K.processed)
  local earlier = redis.call('HGET', K.results, test)
  if earlier then
    count(test, earlier)
    return 'duplicate'
  end
  redis.call('HSET', K.results, test, outcome)
  touch(K.results)
  count(test, outcome)
  return outcome
end

local function take(test, now, out)
  local lease = redis.call('HINCRBY', K.meta, 'leases', 1)
  redis.call('HSET', K.leases, test, lease_value(lease))
  redis.call('ZADD', K.running, now, test)
  touch(K.leases); touch(K.running); touch(K.meta)
  out[#out + 1] = {test, lease}
end

-- How long a failure requeued by this session waits for another live worker before this one
-- may retry it itself: long enough for an idle worker to poll, short enough that a worker whose
-- peers are all busy with long tests does not idle through them.
local function retry_grace(heartbeat_timeout)
  return math.min(math.max(heartbeat_timeout / 6, 1000), 5000)
end

-- Whether this session requeued `test` less than the grace period ago.
local function own_fresh_requeue(test, now, heartbeat_timeout)
  local requeued = redis.call('HGET', K.requeued_by, test)
  if not requeued then return false end
  local by, at = string.match(requeued, '^(.*):(%d+)$')
  return by == SESSION and now - tonumber(at) < retry_grace(heartbeat_timeout)
end

-- RESERVE: first take over lost tests (heartbeat older than the timeout and no outcome yet;
-- entries of tests that already have one are cleaned up, never taken over), then pop from the
-- queue, skipping a test this session just requeued while another worker is alive to retry it
-- and the grace period runs.
local function reserve(k, ctx)
  local out = {}
  if k <= 0 then return out end
  local now, heartbeat_timeout = ctx.now, ctx.meta.heartbeat_timeout
  local lost = redis.call('ZRANGEBYSCORE', K.running, '-inf', now - heartbeat_timeout, 'LIMIT', 0, k)
  for _, test in ipairs(lost) do
    if redis.call('SISMEMBER', K.processed, test) == 1 then
      redis.call('ZREM', K.running, test)
      redis.call('HDEL', K.leases, test)
    else
      take(test, now, out)
      redis.call('HINCRBY', K.stats, 'taken-over', 1)
      touch(K.stats)
    end
  end
  local deferred = {}
  local others = nil
  while #out < k do
    local test = redis.call('LPOP', K.queue)
    if not test then break end
    if redis.call('HEXISTS', K.results, test) == 1 then
      -- Decided in an earlier generation of this build: counted once, not run again.
      decide(test, nil)
    elseif own_fresh_requeue(test, now, heartbeat_timeout) then
      if others == nil then others = others_alive(now, heartbeat_timeout) end
      if others then deferred[#deferred + 1] = test else take(test, now, out) end
    else
      take(test, now, out)
    end
  end
  for i = #deferred, 1, -1 do redis.call('LPUSH', K.queue, deferred[i]) end
  if #deferred > 0 then touch(K.queue) end
  return out
end

-- The reply to a reservation. Once nothing is queued or running, every test of the generation
-- must be processed and counted: anything less means Redis lost part of the build (a key
-- evicted or expired), which must never pass for a finished build.
local function reservation(tests, ctx)
  if #tests > 0 then return {status = 'tests', tests = tests} end
  if redis.call('LLEN', K.queue) > 0 or redis.call('ZCARD', K.running) > 0 then
    return {status = 'empty'}
  end
  local processed = redis.call('SCARD', K.processed)
  if processed ~= ctx.meta.total then
    return {status = 'lost', why = 'nothing is queued or running, yet only ' .. processed .. ' of '
      .. ctx.meta.total .. ' tests have an outcome'}
  end
  if redis.call('HLEN', K.results) < processed then
    return {status = 'lost', why = 'fewer results than tests with an outcome'}
  end
  return {status = 'done'}
end
