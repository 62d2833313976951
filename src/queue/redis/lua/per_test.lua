-- per_test.lua: what the per-test scripts (reserve, ack, heartbeat, release) share. They take the
-- same KEYS, in this order, so all of a build's keys (one hash tag, one cluster slot) are
-- declared:
--   KEYS[1] state      KEYS[2] workers    KEYS[3] results    KEYS[4] failures   KEYS[5] stats
--   KEYS[6] mismatched KEYS[7] queue      KEYS[8] running    KEYS[9] processed  KEYS[10] requeues
--   KEYS[11] requeued-by                  KEYS[12] meta      KEYS[13] failed    KEYS[14] flaky
-- ARGV[1] generation, ARGV[2] worker, ARGV[3] session (one per process: two processes given one
-- worker id are two sessions), ARGV[4] request sequence, ARGV[5] key TTL in ms, ARGV[6] `1` when
-- the session's liveness is due to be recorded; the script's own arguments follow from ARGV[7].
--
-- `running` is a sorted set of `<lease>:<test>` scored by the holder's last heartbeat (server
-- ms), plus the entry '' at +inf that keeps the key (and its TTL) alive while nothing runs. A
-- lease is a token unique to one hand-out, so removing an entry is the fence: only its holder
-- names it.
--
-- Every per-test script runs `open`, its own work, then `close`, which keep, in this order, the
-- steps that make a script safe to re-send and keep keys from leaking:
--   open:  the cached reply of a re-sent request; the staleness check (another generation is
--          the build's); the lost-state check (the generation's meta is gone); liveness when
--          due; the TTL refresh of every key when due.
--   close: the reply remembered (for re-sent requests); the pending meta fields written in one
--          HSET; a TTL for every key this call created.
local K = {
  state = KEYS[1], workers = KEYS[2], results = KEYS[3], failures = KEYS[4], stats = KEYS[5],
  mismatched = KEYS[6], queue = KEYS[7], running = KEYS[8], processed = KEYS[9],
  requeues = KEYS[10], requeued_by = KEYS[11], meta = KEYS[12], failed = KEYS[13],
  flaky = KEYS[14],
}
local GEN, WORKER, SESSION, SEQ, TTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local SEEN_DUE = ARGV[6] == '1'
local REPLY_FIELD = 'reply:' .. SESSION

-- Keys created by this call get their TTL at `close`. A key that can never be emptied gets it
-- once per generation (its letter is then in meta's `made`); the queue, which empties, gets it
-- whenever a push recreates it; `running` never empties (its '' entry).
local LETTER = {
  [K.results] = 'r', [K.failures] = 'f', [K.stats] = 's', [K.processed] = 'p',
  [K.requeues] = 'q', [K.requeued_by] = 'b', [K.failed] = 'x', [K.flaky] = 'y',
}
local ALL = {K.state, K.workers, K.results, K.failures, K.stats, K.mismatched, K.queue,
  K.running, K.processed, K.requeues, K.requeued_by, K.meta, K.failed, K.flaky}

local meta_writes = {}
local function set_meta(field, value) meta_writes[field] = value end

local expire = {}
local made = ''
local function wrote(key)
  local letter = LETTER[key]
  if letter and not string.find(made, letter, 1, true) then
    made = made .. letter
    set_meta('made', made)
    expire[key] = true
  end
end
local function pushed(length, count)
  if length == count then expire[K.queue] = true end
end

-- The generation's settings and counters, and this session's last reply, in one read. Their
-- absence, once the generation is ready, means Redis lost the build: nil.
local function load_meta()
  local m = redis.call('HMGET', K.meta, 'total', 'heartbeat-timeout-ms', 'max-requeues',
    'requeue-limit', 'requeued', 'refreshed-at', 'scanned-at', 'made', 'fresh', REPLY_FIELD)
  if not m[1] or not m[2] then return nil end
  made = m[8] or ''
  return {
    total = tonumber(m[1]), heartbeat_timeout = tonumber(m[2]),
    max_requeues = tonumber(m[3] or '0'), requeue_limit = tonumber(m[4] or '0'),
    requeued = tonumber(m[5] or '0'), refreshed_at = tonumber(m[6] or '0'),
    scanned_at = tonumber(m[7] or '0'), fresh = m[9] == '1', reply = m[10],
  }
end

-- A re-sent request (the reply was lost to a dropped connection) gets the reply of the first
-- delivery instead of being applied twice. A request older than the last one answered (held by a
-- blackholed connection and delivered after its re-sent copy and newer requests) is superseded:
-- applying it would hand out tests the worker never hears of.
local REPLY_TAG = SEQ .. '\n'
local function cached_reply(meta)
  local cached = meta.reply
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

local function seen(now)
  redis.call('HSET', K.workers, SESSION, now .. ':' .. WORKER)
end

local function close(reply, remember)
  if remember then set_meta(REPLY_FIELD, REPLY_TAG .. reply) end
  local fields = {}
  for field, value in pairs(meta_writes) do
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
  if #fields > 0 then redis.call('HSET', K.meta, unpack(fields)) end
  for key in pairs(expire) do redis.call('PEXPIRE', key, TTL) end
  return reply
end

-- `open` returns the call's context, or nil and the reply to return at once. A working build
-- keeps every key alive, including those it only reads: all TTLs are refreshed once a quarter of
-- the TTL has passed since the last refresh.
local function open(options)
  local now = now_ms()
  if redis.call('GET', K.state) ~= 'ready:' .. GEN then
    if options.alive_when_stale then seen(now) end
    return nil, cjson.encode({status = 'stale'})
  end
  local meta = load_meta()
  if not meta then
    return nil, cjson.encode({status = 'lost', why = "its generation's metadata is gone"})
  end
  if options.replay then
    local cached = cached_reply(meta)
    if cached then return nil, cached end
  end
  if SEEN_DUE or options.always_seen then seen(now) end
  if now - meta.refreshed_at >= TTL / 4 then
    for _, key in ipairs(ALL) do expire[key] = true end
    set_meta('refreshed-at', now)
  end
  return {now = now, meta = meta}
end

local function lease_entry(lease, test) return lease .. ':' .. test end

-- Whether another session than this one was heard from within the heartbeat timeout.
local function others_alive(now, heartbeat_timeout)
  local found = false
  each_live_session(K.workers, now, heartbeat_timeout, function(session)
    if session ~= SESSION then found = true end
  end)
  return found
end

-- A final outcome that is not a pass, counted once in the generation's counters (passes are
-- the processed tests that are nothing else); failing and flaky tests are also kept in sets,
-- so the summary lists them without reading every result.
local function count(test, outcome)
  if outcome == 'passed' then return end
  redis.call('HINCRBY', K.meta, 'n:' .. outcome, 1)
  local set = nil
  if outcome == 'failed' or outcome == 'errored' then set = K.failed end
  if outcome == 'flaky' then set = K.flaky end
  if set then
    redis.call('SADD', set, test)
    wrote(set)
  end
end

-- Marks `test` processed with `outcome`, unless the build already decided it (in this
-- generation or an earlier one): then the earlier outcome stands and is what this generation
-- counts (`outcome` may then be nil). Returns the outcome recorded, or 'duplicate'.
local function decide(test, outcome)
  if redis.call('SADD', K.processed, test) == 0 then return 'duplicate' end
  wrote(K.processed)
  if outcome and redis.call('HSETNX', K.results, test, outcome) == 1 then
    wrote(K.results)
    count(test, outcome)
    return outcome
  end
  count(test, redis.call('HGET', K.results, test))
  return 'duplicate'
end

local function take(test, lease, now, out)
  redis.call('ZADD', K.running, now, lease_entry(lease, test))
  out[#out + 1] = {test, lease}
end

-- How long a failure requeued by this session waits for another live worker before this one may
-- retry it itself: long enough for an idle worker to poll, short enough that a worker whose
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

-- How often lost tests are looked for: often enough that a take-over comes soon after the
-- heartbeat timeout, rarely enough that a busy build does not pay for it on every call.
local function scan_due(ctx)
  local every = math.min(math.max(ctx.meta.heartbeat_timeout / 10, 100), 1000)
  return ctx.now - ctx.meta.scanned_at >= every
end

-- RESERVE: first take over lost tests (heartbeat older than the timeout and no outcome yet;
-- entries of tests that already have one are cleaned up, never taken over), then pop from the
-- queue, counting (not running) a test an earlier generation decided, and skipping a test this
-- session requeued while another worker is alive to retry it and the grace period runs. Each
-- hand-out gets a lease unique to this session, request and position.
local function reserve(k, ctx)
  local out = {}
  if k <= 0 then return out end
  local now, heartbeat_timeout = ctx.now, ctx.meta.heartbeat_timeout
  local function next_lease() return SESSION .. '.' .. SEQ .. '.' .. (#out + 1) end
  if scan_due(ctx) then
    set_meta('scanned-at', now)
    local lost = redis.call('ZRANGEBYSCORE', K.running, '-inf', now - heartbeat_timeout,
      'LIMIT', 0, k)
    for _, entry in ipairs(lost) do
      local test = entry_test(entry)
      redis.call('ZREM', K.running, entry)
      if redis.call('SISMEMBER', K.processed, test) == 0 then
        take(test, next_lease(), now, out)
        redis.call('HINCRBY', K.stats, 'taken-over', 1)
        wrote(K.stats)
      end
    end
  end
  local deferred = {}
  local others = nil
  while #out < k do
    local test = redis.call('LPOP', K.queue)
    if not test then break end
    if not ctx.meta.fresh and redis.call('HEXISTS', K.results, test) == 1 then
      -- Decided in an earlier generation of this build: counted once, not run again.
      decide(test, nil)
    elseif ctx.meta.requeued > 0 and own_fresh_requeue(test, now, heartbeat_timeout) then
      if others == nil then others = others_alive(now, heartbeat_timeout) end
      if others then deferred[#deferred + 1] = test else take(test, next_lease(), now, out) end
    else
      take(test, next_lease(), now, out)
    end
  end
  if #deferred > 0 then
    -- Back at the head, in the order they were popped.
    local reversed = {}
    for i = #deferred, 1, -1 do reversed[#reversed + 1] = deferred[i] end
    pushed(redis.call('LPUSH', K.queue, unpack(reversed)), #reversed)
  end
  return out
end

-- The reply to a reservation. Once nothing is queued or running, every test of the generation
-- must be processed and counted: anything less means Redis lost part of the build (a key
-- evicted or expired), which must never pass for a finished build.
local function reservation(tests, ctx)
  if #tests > 0 then return {status = 'tests', tests = tests} end
  if redis.call('LLEN', K.queue) > 0 or redis.call('ZCARD', K.running) > 1 then
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
