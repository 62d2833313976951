-- RETRY: a job retry (a CI job retried after its build ended) re-runs the build's failed tests, once per retry
-- round however many jobs are retried. It re-opens the finished generation for them: each
-- failing test leaves the processed tests, its result and the failing set, counts one more
-- requeue (so a pass now is flaky and a skip leaves the failure standing, as for a failure
-- requeued within the build) and goes back in the queue; passed, skipped and flaky tests stay as
-- they were. The generation's total does not change, so the summary still covers every test.
-- Every check comes before the first write, and the round is recorded last (when, and how many
-- tests it re-opened: KEEP undoes it when none of them is re-run): a call that fails half-way
-- leaves the round to be applied again.
-- KEYS: the per-test scripts' 15, in per_test.lua's order. ARGV[1] generation, ARGV[2] worker,
-- ARGV[3] session, ARGV[4] round ('': a retried job is one whose worker id already had a session
-- in the build), ARGV[5] key TTL ms ('': the keys keep theirs).
-- Replies JSON {status = stale | running | first | again | nothing | lost | retrying, tests = n,
-- round, why}: `first` when no session of this worker id took part (not a retried job),
-- `running` when the generation is not finished (the job joins it as any worker), `again` when
-- the round was already applied by another job, `nothing` when no test failed, `lost` when the
-- failing tests do not match their counters.
local state, workers, results, queue, running, processed, requeues, meta, failed =
  KEYS[1], KEYS[2], KEYS[3], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[12], KEYS[13]
local generation, worker, session, round, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('GET', state) ~= 'ready:' .. generation then
  return cjson.encode({status = 'stale'})
end
if round == '' then
  -- The sessions this worker id had before this one: the n-th retry of a job is round n, which
  -- every job retried for the n-th time shares.
  local earlier = 0
  local all = redis.call('HGETALL', workers)
  for i = 1, #all, 2 do
    local value = all[i + 1]
    local id = string.match(value, '^%d+:(.*)$') or string.match(value, '^left:%d+:(.*)$')
    if all[i] ~= session and id == worker then earlier = earlier + 1 end
  end
  if earlier == 0 then return cjson.encode({status = 'first'}) end
  round = 'rejoin-' .. earlier
end
local field = 'retry:' .. round
if redis.call('HEXISTS', meta, field) == 1 then
  return cjson.encode({status = 'again', round = round})
end
local m = redis.call('HMGET', meta, 'total', 'n:failed', 'n:errored', 'made')
local total = tonumber(m[1] or '-1')
if redis.call('LLEN', queue) > 0 or redis.call('ZCARD', running) ~= 1
  or redis.call('SCARD', processed) ~= total then
  return cjson.encode({status = 'running', round = round})
end
local lost = {failed = tonumber(m[2] or '0'), errored = tonumber(m[3] or '0')}
local count = redis.call('SCARD', failed)
if count ~= lost.failed + lost.errored then
  return cjson.encode({status = 'lost', round = round,
    why = count .. ' failing tests in their set, ' .. (lost.failed + lost.errored) .. ' counted'})
end
if count == 0 then
  redis.call('HSET', meta, field, now_ms())
  return cjson.encode({status = 'nothing', round = round})
end
local tests = redis.call('SMEMBERS', failed)
table.sort(tests)
-- In slices: Lua unpacks at most a few thousand values at once.
for from = 1, #tests, 1000 do
  local slice = {unpack(tests, from, math.min(from + 999, #tests))}
  for _, test in ipairs(slice) do redis.call('HINCRBY', requeues, test, 1) end
  redis.call('SREM', processed, unpack(slice))
  redis.call('HDEL', results, unpack(slice))
  redis.call('RPUSH', queue, unpack(slice))
end
redis.call('DEL', failed)
for outcome, n in pairs(lost) do
  -- A string: Lua's -0 would reach Redis as "-0", which HINCRBY refuses.
  if n > 0 then redis.call('HINCRBY', meta, 'n:' .. outcome, string.format('%d', -n)) end
end
redis.call('HINCRBY', meta, 'requeued', #tests)
redis.call('HINCRBY', meta, 'requeue-limit', #tests)
-- The sets and hashes this emptied are made again by the per-test scripts, which give a key its
-- TTL when its letter is not yet in `made`.
local made = string.gsub(m[4] or '', '[prx]', '')
redis.call('HSET', meta, 'made', made, field, now_ms(), field .. ':tests', #tests)
if ttl ~= '' then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return cjson.encode({status = 'retrying', tests = #tests, round = round})
