-- SUMMARIZE: a generation's verdict in one atomic read whose size does not grow with the suite:
-- counts from the counters the per-test scripts keep, and at most ARGV[1] failing, ARGV[1]
-- flaky and ARGV[2] unfinished tests by name. It also checks the build is whole: every listed
-- test is queued, running or processed exactly once, no more outcomes are counted than tests
-- processed and every processed test has its result, every counted failure has its set entry
-- and its detail. Anything else means Redis
-- lost part of the build (a key evicted, expired or deleted), and the reply says so instead of
-- counts that would be wrong.
-- KEYS[1] meta, KEYS[2] queue, KEYS[3] running, KEYS[4] processed, KEYS[5] results,
-- KEYS[6] failures, KEYS[7] requeues, KEYS[8] stats, KEYS[9] failed, KEYS[10] flaky,
-- KEYS[11] mismatched.
-- Replies JSON {lost = why} or {total, counts = {outcome = n}, requeued, taken_over,
-- failed = {{id, outcome, detail, requeues}...}, flaky = {...}, not_run = {ids},
-- not_run_count, mismatches = {lines}, stopped = {lines}} (stopped: the stats' `stopped:<session>`
-- fields, workers that stopped taking tests).
local limit, not_run_limit = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Passes are not counted: they are the processed tests that are nothing else.
local names = {'failed', 'skipped', 'flaky', 'errored'}
local fields = {'total', 'requeued'}
for _, name in ipairs(names) do fields[#fields + 1] = 'n:' .. name end
local m = redis.call('HMGET', KEYS[1], unpack(fields))
if not m[1] then return cjson.encode({lost = "the generation's metadata is gone"}) end
local total = tonumber(m[1])
local requeued = tonumber(m[2] or '0')
local counts, counted = {}, 0
for i, name in ipairs(names) do
  counts[name] = tonumber(m[i + 2] or '0')
  counted = counted + counts[name]
end

local queued = redis.call('LLEN', KEYS[2])
-- The running set's '' entry is there from the commit on; without it the set was lost.
local running = redis.call('ZCARD', KEYS[3]) - 1
local processed = redis.call('SCARD', KEYS[4])
counts.passed = processed - counted
counted = processed
local failing = counts.failed + counts.errored
local lost = nil
if running < 0 then
  lost = 'the running set is gone'
elseif counts.passed < 0 then
  lost = processed .. ' tests processed, but more outcomes counted'
elseif queued + running + processed ~= total then
  lost = total .. ' tests listed, but ' .. queued .. ' queued, ' .. running .. ' running and '
    .. processed .. ' processed'
elseif redis.call('HLEN', KEYS[5]) < processed then
  lost = 'fewer results than processed tests'
elseif redis.call('SCARD', KEYS[9]) ~= failing or redis.call('SCARD', KEYS[10]) ~= counts.flaky then
  lost = 'the failing or flaky tests do not match their counts'
elseif redis.call('HLEN', KEYS[6]) < failing + counts.flaky then
  lost = 'failure details are missing'
elseif requeued > 0 and redis.call('EXISTS', KEYS[7]) == 0 then
  lost = 'the requeue counts are gone'
end
if lost then return cjson.encode({lost = lost}) end

local function listed(set)
  local out, seen, cursor = {}, {}, '0'
  repeat
    local page = redis.call('SSCAN', set, cursor, 'COUNT', 100)
    cursor = page[1]
    for _, test in ipairs(page[2]) do
      if #out < limit and not seen[test] then
        seen[test] = true
        out[#out + 1] = {test, redis.call('HGET', KEYS[5], test) or '',
          redis.call('HGET', KEYS[6], test) or '', tonumber(redis.call('HGET', KEYS[7], test) or '0')}
      end
    end
  until cursor == '0' or #out >= limit
  return out
end

local function stopped_workers()
  local out, stats = {}, redis.call('HGETALL', KEYS[8])
  for i = 1, #stats, 2 do
    if string.sub(stats[i], 1, 8) == 'stopped:' then out[#out + 1] = stats[i + 1] end
  end
  return out
end

local not_run = {}
if not_run_limit > 0 then
  not_run = redis.call('LRANGE', KEYS[2], 0, not_run_limit - 1)
  if #not_run < not_run_limit then
    for _, entry in ipairs(redis.call('ZRANGE', KEYS[3], 0, not_run_limit - 1 - #not_run)) do
      if entry ~= '' then not_run[#not_run + 1] = entry_test(entry) end
    end
  end
end
return cjson.encode({
  total = total, counts = counts, requeued = requeued,
  taken_over = tonumber(redis.call('HGET', KEYS[8], 'taken-over') or '0'),
  failed = listed(KEYS[9]), flaky = listed(KEYS[10]),
  not_run = not_run, not_run_count = queued + running,
  mismatches = redis.call('HVALS', KEYS[11]),
  stopped = stopped_workers(),
})
