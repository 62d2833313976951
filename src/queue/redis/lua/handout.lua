-- handout.lua: how RESERVE and ACK hand tests out and record outcomes (after per_test.lua).

-- An auto batch takes at most 1/(live workers x this) of the tests queued.
local SHARE_PER_WORKER = 4

-- How many worker sessions were heard from within the heartbeat timeout, counted at most once
-- a second (auto batches ask on every call; the count is in meta meanwhile).
local function live_workers(ctx)
  local cached = redis.call('HMGET', K.meta, 'live', 'live-at')
  if cached[1] and ctx.now - cached[2] < 1000 then return cached[1] + 0 end
  local live = 0
  each_live_session(K.workers, ctx.now, ctx.meta.heartbeat_timeout, function()
    live = live + 1
  end)
  live = math.max(live, 1)
  set_meta('live', live)
  set_meta('live-at', ctx.now)
  return live
end

-- How many tests a request wants: `max`, or `max:budget:typical:floor` (ms) for an auto batch,
-- which `Want::take` in src/queue/want.rs computes alike for the local queue: tests from the head
-- of the queue while their estimated time stays within `budget` (a test estimated longer goes
-- alone), and at most 1/(live workers x SHARE_PER_WORKER) of the tests queued, so batches shrink
-- as the queue empties, unless their estimated time is still below `floor` (the batch's own
-- start). A test's estimate is its field of `estimates`, else that hash's default (the field
-- ''), else `typical` (the worker's typical test; 0 for none: one test).
local function wanted(arg, ctx)
  local max, budget, typical, floor = string.match(arg, '^(%d+):(%d+):(%d+):(%d+)$')
  if not max then return arg + 0 end
  max, budget, typical, floor = tonumber(max), tonumber(budget), tonumber(typical),
    tonumber(floor)
  if max <= 1 then return max end
  local queued = redis.call('LLEN', K.queue)
  local share = math.max(math.ceil(queued / (live_workers(ctx) * SHARE_PER_WORKER)), 1)
  local fields = {''}
  local default = tonumber(redis.call('HGET', K.estimates, '') or typical)
  if default == 0 then return 1 end
  -- The head as far as the share, or the floor, can reach.
  local reach = math.min(max, math.max(share, math.ceil(floor / default) + 1))
  for i, test in ipairs(redis.call('LRANGE', K.queue, 0, reach - 1)) do fields[i + 1] = test end
  local estimates = {}
  if #fields > 1 then estimates = redis.call('HMGET', K.estimates, unpack(fields)) end
  local sum, taken = 0, 0
  for i = 2, #fields do
    local estimate = tonumber(estimates[i]) or default
    if taken > 0 and (sum + estimate > budget or (taken >= share and sum >= floor)) then break end
    sum = sum + estimate
    taken = taken + 1
  end
  return math.max(taken, 1)
end

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
  local set, letter = nil, nil
  if outcome == 'failed' or outcome == 'errored' then set, letter = K.failed, 'x' end
  if outcome == 'flaky' then set, letter = K.flaky, 'y' end
  if set then
    redis.call('SADD', set, test)
    wrote(set, letter)
  end
end

-- Marks each item's test processed with its outcome ({test, outcome}: nil for a test the build
-- already decided), unless it already was: the first outcome recorded stands and is what this
-- generation counts. Returns each item's status, the outcome recorded or 'duplicate'. One item
-- costs two commands; more cost four, whatever their number.
local function decide_all(items)
  local n, tests, statuses = #items, {}, {}
  if n == 0 then return statuses end
  for i, item in ipairs(items) do tests[i] = item[1] end
  local new, earlier = {}, {}
  if n == 1 then
    new[1] = redis.call('SADD', K.processed, tests[1]) == 1
    local outcome = items[1][2]
    if new[1] and outcome and redis.call('HSETNX', K.results, tests[1], outcome) == 0 then
      earlier[1] = redis.call('HGET', K.results, tests[1])
    elseif new[1] and not outcome then
      earlier[1] = redis.call('HGET', K.results, tests[1])
    end
  else
    local member = redis.call('SMISMEMBER', K.processed, unpack(tests))
    redis.call('SADD', K.processed, unpack(tests))
    earlier = redis.call('HMGET', K.results, unpack(tests))
    local fields = {}
    for i = 1, n do
      new[i] = member[i] == 0
      if new[i] and not earlier[i] and items[i][2] then
        fields[#fields + 1] = tests[i]
        fields[#fields + 1] = items[i][2]
      end
    end
    if #fields > 0 then redis.call('HSET', K.results, unpack(fields)) end
  end
  wrote(K.processed, 'p')
  wrote(K.results, 'r')
  for i = 1, n do
    if not new[i] then
      statuses[i] = 'duplicate'
    elseif earlier[i] then
      count(tests[i], earlier[i])
      statuses[i] = 'duplicate'
    else
      count(tests[i], items[i][2])
      statuses[i] = items[i][2]
    end
  end
  return statuses
end

-- Takes each running entry `<lease>:<test>` out of the running set if it is still there: the
-- fence, since only the holder of a hand-out names its lease. Returns which were.
local function release_entries(entries)
  local n, held = #entries, {}
  if n == 0 then return held end
  if n == 1 then
    held[1] = redis.call('ZREM', K.running, entries[1]) == 1
    return held
  end
  local scores = redis.call('ZMSCORE', K.running, unpack(entries))
  local present = {}
  for i = 1, n do
    held[i] = scores[i] ~= false
    if held[i] then present[#present + 1] = entries[i] end
  end
  if #present > 0 then redis.call('ZREM', K.running, unpack(present)) end
  return held
end

-- How long a failure requeued by this session waits for another live worker before this one may
-- run it again itself: long enough for an idle worker to poll, short enough that a worker whose
-- peers are all busy with long tests does not idle through them.
local function requeue_grace(heartbeat_timeout)
  return math.min(math.max(heartbeat_timeout / 6, 1000), 5000)
end

-- Whether `requeued` (a test's `<session>:<ms>` of its last requeue) says this session
-- requeued it less than the grace period ago.
local function own_fresh_requeue(requeued, now, heartbeat_timeout)
  local by, at = string.match(requeued, '^(.*):(%d+)$')
  return by == SESSION and now - tonumber(at) < requeue_grace(heartbeat_timeout)
end

-- Most lost tests put back by one scan: a batch's most.
local LOST_PER_SCAN = 1000

-- How often lost tests are looked for: often enough that a take-over comes soon after the
-- heartbeat timeout, rarely enough that a busy build does not pay for it on every call.
local function scan_due(ctx)
  local every = math.min(math.max(ctx.meta.heartbeat_timeout / 10, 100), 1000)
  return ctx.now - ctx.meta.scanned_at >= every
end

-- RESERVE: first put lost tests (heartbeat older than the timeout and no outcome yet; entries of
-- tests that already have one are cleaned up, never taken over) back at the head of the queue,
-- all of them at once (at most a batch's MAX), so that a dead worker's whole batch is shared out
-- by the next reservations as any queued tests are, not taken over one a scan; then decide how
-- many to take (`want`, see `wanted`) and pop them from the queue, counting (not running) a test an earlier generation decided, and skipping a test this
-- session requeued while another worker is alive to run it again and the grace period runs. Each
-- hand-out gets a lease unique to this session, request and position. A batch costs the same
-- few commands as one test: pops, lookups and the running entries go in one command each.
local function reserve(want, ctx)
  local out, adds = {}, {}
  local now, heartbeat_timeout = ctx.now, ctx.meta.heartbeat_timeout
  -- The hand-out's server time as text, once: the score of each running entry (which Redis
  -- would otherwise format from the number for each) and the end of its lease, which `ciq
  -- status` reads: since when a worker holds its tests, at no cost of a command.
  local at = tostring(now)
  local function take(test)
    local lease = LEASE_PREFIX .. (#out + 1) .. '.' .. at
    out[#out + 1] = {test, lease}
    adds[#adds + 1] = at
    adds[#adds + 1] = lease_entry(lease, test)
  end
  if want == '0' then return out end
  if scan_due(ctx) then
    set_meta('scanned-at', now)
    local lost = redis.call('ZRANGEBYSCORE', K.running, '-inf', now - heartbeat_timeout,
      'LIMIT', 0, LOST_PER_SCAN)
    local back, leases, freed = {}, {}, {}
    for i = #lost, 1, -1 do
      local test = entry_test(lost[i])
      redis.call('ZREM', K.running, lost[i])
      freed[#freed + 1] = test
      if redis.call('SISMEMBER', K.processed, test) == 0 then
        back[#back + 1] = test
        -- A lease is `<session>.<seq>.<i>.<at>`: the timeline names it without its time.
        leases[#leases + 1] = string.match(lost[i], '^[^.:]*%.[^.:]*%.[^.:]*')
      end
    end
    if ctx.meta.groups then free_slots(freed) end
    if #back > 0 then
      record('T ' .. table.concat(leases, ' '))
      pushed(redis.call('LPUSH', K.queue, unpack(back)), #back)
      redis.call('HINCRBY', K.stats, 'taken-over', #back)
      wrote(K.stats, 's')
    end
  end
  local k = wanted(want, ctx)
  if k <= 0 then return out end
  local deferred = {}
  local others = nil
  while #out < k do
    local popped = redis.call('LPOP', K.queue, k - #out)
    if not popped then break end
    local decided, requeuers, earlier, grouped = {}, {}, {}, {}
    if not ctx.meta.fresh then decided = redis.call('HMGET', K.results, unpack(popped)) end
    if ctx.meta.groups then grouped = redis.call('HMGET', K.groups, unpack(popped)) end
    -- A grouped test whose group is full keeps its place; a test that fits goes instead.
    local function fits(i)
      local group = grouped[i]
      if not group then return true end
      local s = slot(group)
      if s.limit and s.held >= s.limit then return false end
      hold_slot(group, 1)
      return true
    end
    if ctx.meta.requeued > 0 then
      requeuers = redis.call('HMGET', K.requeued_by, unpack(popped))
    end
    for i, test in ipairs(popped) do
      if decided[i] then
        -- Decided in an earlier generation of this build: counted once, not run again.
        earlier[#earlier + 1] = {test, nil}
      elseif requeuers[i] and own_fresh_requeue(requeuers[i], now, heartbeat_timeout) then
        if others == nil then others = others_alive(now, heartbeat_timeout) end
        if not others and fits(i) then take(test) else deferred[#deferred + 1] = test end
      elseif fits(i) then
        take(test)
      else
        deferred[#deferred + 1] = test
      end
    end
    decide_all(earlier)
  end
  if #adds > 0 then
    redis.call('ZADD', K.running, unpack(adds))
    if #out == 1 then
      record('R ' .. SEQ .. '\n ' .. out[1][1])
    else
      local ids = {}
      for i, item in ipairs(out) do ids[i] = item[1] end
      record('R ' .. SEQ .. '\n ' .. table.concat(ids, '\n '))
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
  expire_all()
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
