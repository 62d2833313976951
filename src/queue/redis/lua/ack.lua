-- ACK(results) + RESERVE(k) in one round trip.
-- ARGV[6] k, then one group of four per result: test id, lease, outcome, failure detail (JSON,
-- empty for a pass). Invariants:
--  * Lease fencing: a result whose lease is no longer the test's current lease (the test was
--    taken over) changes nothing, so a late worker never removes the new holder's entry.
--  * A failure within the per-test and build requeue budgets goes back to the head of the queue
--    for another worker; its detail is kept for the report.
--  * Otherwise the test is processed, and the first outcome recorded is its outcome; a later one
--    is a duplicate and never counted again. A pass after a requeued failure is flaky; a skip
--    after one leaves the failure standing.
-- Replies as RESERVE, with recorded = {{id, passed|failed|...|requeued|discarded|duplicate}...}.
local ctx, early = open(true, false)
if not ctx then return early end

local requeued = tonumber(redis.call('HGET', K.meta, 'requeued') or '0')
local function requeue_allowed(test)
  local per_test = tonumber(redis.call('HGET', K.requeues, test) or '0')
  return per_test < ctx.meta.max_requeues and requeued < ctx.meta.requeue_limit
end

-- A running test always has both its running entry and its lease: one without the other
-- means Redis lost a key under a working build.
local recorded = {}
for i = 7, #ARGV, 4 do
  local test, lease, outcome, detail = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local status
  if not holds(test, lease) then
    if not redis.call('HGET', K.leases, test) and redis.call('ZSCORE', K.running, test) then
      return close(cjson.encode({status = 'lost', why = 'a running test has no lease'}), false)
    end
    status = 'discarded'
    redis.call('HINCRBY', K.stats, 'discarded', 1)
    touch(K.stats)
  else
    if redis.call('ZREM', K.running, test) == 0 then
      return close(cjson.encode({status = 'lost', why = 'a leased test is not running'}), false)
    end
    redis.call('HDEL', K.leases, test)
    local failed = outcome == 'failed' or outcome == 'errored'
    if failed and requeue_allowed(test) then
      requeued = requeued + 1
      redis.call('HINCRBY', K.requeues, test, 1)
      redis.call('HSET', K.meta, 'requeued', requeued)
      redis.call('HSET', K.requeued_by, test, SESSION .. ':' .. ctx.now)
      redis.call('HSET', K.failures, test, detail)
      redis.call('LPUSH', K.queue, test)
      touch(K.requeues); touch(K.requeued_by); touch(K.failures); touch(K.queue)
      status = 'requeued'
    else
      if redis.call('HEXISTS', K.requeues, test) == 1 then
        -- A retry that passes makes a failure flaky; one that is skipped proves nothing, so
        -- the failure stands (its detail was kept when it was requeued).
        if outcome == 'passed' then outcome = 'flaky' end
        if outcome == 'skipped' then outcome = 'failed' end
      end
      status = decide(test, outcome)
      if status ~= 'duplicate' and failed then
        redis.call('HSET', K.failures, test, detail)
        touch(K.failures)
      end
    end
  end
  recorded[#recorded + 1] = {test, status}
end

local reply = reservation(reserve(tonumber(ARGV[6]), ctx), ctx)
reply.recorded = recorded
return close(cjson.encode(reply), true)
