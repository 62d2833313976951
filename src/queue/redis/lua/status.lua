-- STATUS: where a build stands, for `ciq status`, in one read-only round trip whose size does not
-- grow with the suite: the state, the generation's counters, what each worker session holds and
-- since when, and the first failing tests by name. It writes nothing.
-- KEYS[1] state, KEYS[2] aborted, KEYS[3] workers, then the generation's KEYS[4] meta,
-- KEYS[5] queue, KEYS[6] running, KEYS[7] processed, KEYS[8] failed, KEYS[9] estimates
-- (any names before a generation is known), then the build's KEYS[10] results and KEYS[11]
-- stats.
-- ARGV[1] how many failing tests to name, ARGV[2] how many running entries to return.
-- Replies JSON {now (server ms), state, abort, total (-1 before a commit or once the meta is
-- lost), timeout (heartbeat timeout ms), queued, processed, running (count), counts = {outcome =
-- n} (passes excluded), requeued, taken_over, workers = {{session, value}...} (the workers hash), held =
-- {{entry, heartbeat ms, estimate ms or -1}...}, default (the estimate of a test without one,
-- -1 for none), failing = {{id, outcome}...}, existed (1: no state, but results remain)}.
local now = now_ms()
local names = {'failed', 'errored', 'flaky', 'skipped'}
local fields = {'total', 'heartbeat-timeout-ms', 'requeued'}
for _, name in ipairs(names) do fields[#fields + 1] = 'n:' .. name end
local m = redis.call('HMGET', KEYS[4], unpack(fields))
local counts = {}
for i, name in ipairs(names) do counts[name] = tonumber(m[i + 3] or '0') end

local held = {}
local entries = redis.call('ZRANGE', KEYS[6], 0, tonumber(ARGV[2]), 'WITHSCORES')
local tests = {''}
for i = 1, #entries, 2 do
  if entries[i] ~= '' then
    held[#held + 1] = {entries[i], tonumber(entries[i + 1]), -1}
    tests[#tests + 1] = entry_test(entries[i])
  end
end
local estimates = redis.call('HMGET', KEYS[9], unpack(tests))
for i, entry in ipairs(held) do entry[3] = tonumber(estimates[i + 1] or '-1') end

local failing = {}
local limit = tonumber(ARGV[1])
if limit > 0 then
  local cursor = '0'
  repeat
    local page = redis.call('SSCAN', KEYS[8], cursor, 'COUNT', 100)
    cursor = page[1]
    for _, test in ipairs(page[2]) do
      if #failing < limit then
        failing[#failing + 1] = {test, redis.call('HGET', KEYS[10], test) or 'failed'}
      end
    end
  until cursor == '0' or #failing >= limit
end

local workers = {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do workers[#workers + 1] = {all[i], all[i + 1]} end

local running = redis.call('ZCARD', KEYS[6])
if running > 0 then running = running - 1 end
local state = redis.call('GET', KEYS[1])
local existed = 0
if not state and redis.call('EXISTS', KEYS[10]) > 0 then existed = 1 end
return cjson.encode({
  now = now,
  state = state or '',
  abort = redis.call('GET', KEYS[2]) or '',
  total = tonumber(m[1] or '-1'),
  timeout = tonumber(m[2] or '0'),
  requeued = tonumber(m[3] or '0'),
  taken_over = tonumber(redis.call('HGET', KEYS[11], 'taken-over') or '0'),
  counts = counts,
  queued = redis.call('LLEN', KEYS[5]),
  processed = redis.call('SCARD', KEYS[7]),
  running = running,
  workers = workers,
  held = held,
  default = tonumber(estimates[1] or '-1'),
  failing = failing,
  existed = existed,
})
