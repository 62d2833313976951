-- KEEP: the report of a retry round whose retried jobs re-ran none of the re-opened tests (none
-- came, or they left first) gives those tests back the outcome they had before the round, so the
-- build keeps its earlier verdict (a failure stays a failure) instead of counting them not run.
-- RETRY undone, test by test: processed again, its result and failing-set entry back from its
-- kept failure detail, one requeue fewer. Only when nothing of the round ran: nothing running,
-- and exactly the tests the round re-opened still queued; a retried job that comes later finds
-- the build finished. Every check comes before the first write.
-- KEYS: the per-test scripts' 15, in per_test.lua's order. ARGV[1] generation, ARGV[2] round.
-- Replies JSON {status = stale | ran | unknown | kept, tests = n, why}: `ran` when the round
-- re-opened nothing or something of it ran, `unknown` when a queued test has no failure detail
-- to take its earlier outcome from.
local state, results, failures, queue, running, processed, requeues, meta, failed =
  KEYS[1], KEYS[3], KEYS[4], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[12], KEYS[13]
local generation, round = ARGV[1], ARGV[2]
if redis.call('GET', state) ~= 'ready:' .. generation then
  return cjson.encode({status = 'stale'})
end
local field = 'retry:' .. round
local reopened = tonumber(redis.call('HGET', meta, field .. ':tests') or '0')
if reopened == 0 or redis.call('ZCARD', running) ~= 1
  or redis.call('LLEN', queue) ~= reopened then
  return cjson.encode({status = 'ran'})
end
local tests = redis.call('LRANGE', queue, 0, -1)
local outcomes, counts = {}, {failed = 0, errored = 0}
for i, test in ipairs(tests) do
  local ok, detail = pcall(cjson.decode, redis.call('HGET', failures, test) or '')
  local outcome = ok and type(detail) == 'table' and detail.outcome
  if (outcome ~= 'failed' and outcome ~= 'errored')
    or tonumber(redis.call('HGET', requeues, test) or '0') < 1 then
    return cjson.encode({status = 'unknown', why = test})
  end
  outcomes[i] = outcome
  counts[outcome] = counts[outcome] + 1
end
for i, test in ipairs(tests) do
  redis.call('SADD', processed, test)
  redis.call('HSET', results, test, outcomes[i])
  redis.call('SADD', failed, test)
  if redis.call('HINCRBY', requeues, test, -1) <= 0 then redis.call('HDEL', requeues, test) end
end
redis.call('DEL', queue)
for outcome, n in pairs(counts) do
  if n > 0 then redis.call('HINCRBY', meta, 'n:' .. outcome, n) end
end
redis.call('HINCRBY', meta, 'requeued', -#tests)
redis.call('HINCRBY', meta, 'requeue-limit', -#tests)
-- RETRY left these keys to the per-test scripts to give a TTL when they make them again (their
-- letters out of `made`): they are made here, with the generation's own TTL.
local ttl = redis.call('PTTL', meta)
local made = redis.call('HGET', meta, 'made') or ''
for letter, key in pairs({p = processed, r = results, x = failed}) do
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  if not string.find(made, letter, 1, true) then made = made .. letter end
end
redis.call('HSET', meta, 'made', made, field .. ':kept', now_ms())
return cjson.encode({status = 'kept', tests = #tests})
