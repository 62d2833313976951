-- Prelude of the per-test scripts (reserve, ack, heartbeat, release): key names, arguments and
-- helpers shared by all four. Every per-test script takes the same KEYS, in this order, so all of
-- a build's keys (one hash tag, one cluster slot) are declared:
--   KEYS[1] state      KEYS[2] workers    KEYS[3] results    KEYS[4] failures   KEYS[5] stats
--   KEYS[6] queue      KEYS[7] running    KEYS[8] leases     KEYS[9] processed  KEYS[10] requeues
--   KEYS[11] requeued-by                  KEYS[12] meta      KEYS[13] replies
-- ARGV[1] generation, ARGV[2] worker, ARGV[3] session, ARGV[4] request sequence, ARGV[5] key TTL
-- in ms; the script's own arguments follow from ARGV[6].
-- Times are Redis server time: worker clocks drift, and a worker whose clock runs ahead must not
-- take everyone's tests.
local K = {
  state = KEYS[1], workers = KEYS[2], results = KEYS[3], failures = KEYS[4], stats = KEYS[5],
  queue = KEYS[6], running = KEYS[7], leases = KEYS[8], processed = KEYS[9], requeues = KEYS[10],
  requeued_by = KEYS[11], meta = KEYS[12], replies = KEYS[13],
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
-- superseded: applying it would hand out tests the worker never hears of. The session tells
-- two processes with one worker id apart.
local REPLY_TAG = SESSION .. ':' .. SEQ .. '\n'
local function cached_reply()
  local cached = redis.call('HGET', K.replies, WORKER)
  if not cached then return nil end
  if string.sub(cached, 1, #REPLY_TAG) == REPLY_TAG then
    return string.sub(cached, #REPLY_TAG + 1)
  end
  local session, seq = string.match(cached, '^([^:]*):(%d+)\n')
  if session == SESSION and tonumber(seq) > tonumber(SEQ) then
    return cjson.encode({status = 'superseded'})
  end
  return nil
end
local function remember(reply)
  redis.call('HSET', K.replies, WORKER, REPLY_TAG .. reply)
  touch(K.replies)
  return reply
end

local function seen(now)
  redis.call('HSET', K.workers, WORKER, tostring(now))
  touch(K.workers)
end

-- A build that keeps working keeps its state: its TTL runs from the last reservation, so only
-- an abandoned build expires.
local function keep_state() touch(K.state) end

-- A lease entry names both the lease number and its holder.
local function lease_value(lease) return lease .. ':' .. WORKER end
local function holds(test, lease) return redis.call('HGET', K.leases, test) == lease_value(lease) end

local function others_alive(now, heartbeat_timeout)
  local all = redis.call('HGETALL', K.workers)
  for i = 1, #all, 2 do
    local last = tonumber(all[i + 1])
    if all[i] ~= WORKER and last and now - last < heartbeat_timeout then return true end
  end
  return false
end

local function take(test, now, out)
  local lease = redis.call('HINCRBY', K.meta, 'leases', 1)
  redis.call('HSET', K.leases, test, lease_value(lease))
  redis.call('ZADD', K.running, now, test)
  touch(K.leases); touch(K.running); touch(K.meta)
  out[#out + 1] = {test, lease}
end

-- RESERVE: first take over lost tests (heartbeat older than the timeout and no outcome yet;
-- entries of tests that already have one are cleaned up, never taken over), then pop from the
-- queue, skipping a test this worker just requeued while another worker is alive to retry it.
local function reserve(k, now)
  local out = {}
  if k <= 0 then return out end
  local heartbeat_timeout = tonumber(redis.call('HGET', K.meta, 'heartbeat-timeout-ms'))
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
      redis.call('SADD', K.processed, test)
      touch(K.processed)
    elseif redis.call('HGET', K.requeued_by, test) == WORKER then
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

local function reservation(tests)
  if #tests > 0 then return {status = 'tests', tests = tests} end
  if redis.call('LLEN', K.queue) == 0 and redis.call('ZCARD', K.running) == 0 then
    return {status = 'done'}
  end
  return {status = 'empty'}
end
