-- RETRY: a CI job retried after its build ended re-runs the build's failed tests, once per retry
-- round however many jobs are retried. It re-opens the finished generation for them: each
-- failing test leaves the processed tests, its result and the failing set, counts one more
-- requeue (so a pass now is flaky and a skip leaves the failure standing, as for a failure
-- retried within the build) and goes back in the queue; passed, skipped and flaky tests stay as
-- they were. The generation's total does not change, so the summary still covers every test.
-- KEYS: the per-test scripts' 14, in per_test.lua's order. ARGV[1] generation, ARGV[2] worker,
-- ARGV[3] session, ARGV[4] round ('': a retried job is one whose worker id already had a session
-- in the build), ARGV[5] key TTL ms.
-- Replies JSON {status = stale | running | first | again | nothing | retrying, tests = n,
-- round}: `first` when no session of this worker id took part (not a retried job), `running`
-- when the generation is not finished (the job joins it as any worker), `again` when the round
-- was already applied by another job, `nothing` when no test failed.
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
local total = tonumber(redis.call('HGET', meta, 'total') or '-1')
if redis.call('LLEN', queue) > 0 or redis.call('ZCARD', running) > 1
  or redis.call('SCARD', processed) ~= total then
  return cjson.encode({status = 'running', round = round})
end
local tests = redis.call('SMEMBERS', failed)
redis.call('HSET', meta, field, now_ms())
if #tests == 0 then return cjson.encode({status = 'nothing', round = round}) end
local outcomes = redis.call('HMGET', results, unpack(tests))
local lost = {failed = 0, errored = 0}
for i, test in ipairs(tests) do
  local outcome = outcomes[i]
  if lost[outcome] then lost[outcome] = lost[outcome] + 1 end
  redis.call('HINCRBY', requeues, test, 1)
end
table.sort(tests)
redis.call('SREM', processed, unpack(tests))
redis.call('HDEL', results, unpack(tests))
redis.call('DEL', failed)
redis.call('RPUSH', queue, unpack(tests))
for outcome, n in pairs(lost) do
  -- A string: Lua's -0 would reach Redis as "-0", which HINCRBY refuses half-way through.
  if n > 0 then redis.call('HINCRBY', meta, 'n:' .. outcome, string.format('%d', -n)) end
end
redis.call('HINCRBY', meta, 'requeued', #tests)
redis.call('HINCRBY', meta, 'requeue-limit', #tests)
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return cjson.encode({status = 'retrying', tests = #tests, round = round})
