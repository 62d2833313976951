-- ACK(results) + RESERVE(k) in one round trip.
-- ARGV[7] k (as RESERVE's), then one group of five per result: test id, lease, outcome, failure
-- detail (JSON, empty for a pass), and the result's item of the timeline's `A` record,
-- `<seq>.<i><letter><ms>` (the lease's position, the outcome's letter, the run's duration as the
-- worker measured it), which the script appends as it is unless the run was requeued or
-- discarded. Invariants:
--  * Lease fencing: a result whose running entry is no longer there (the test was taken over,
--    released, or already acknowledged) changes nothing, so a late worker never removes the new
--    holder's entry and never adds an outcome.
--  * A failure within the per-test and build requeue budgets goes back to the head of the queue
--    for another worker; its detail is kept for the report.
--  * Otherwise the test is processed, and the first outcome recorded is its outcome; a later one
--    is a duplicate and never counted again. A pass after a requeued failure is flaky; a skip
--    after one leaves the failure standing.
-- Replies as RESERVE, with recorded = {{id, passed|failed|...|requeued|discarded|duplicate}...}.
local ctx, early = open({replay = true})
if not ctx then return early end

local meta = ctx.meta
local function requeue_allowed(test)
  if meta.requeued >= meta.requeue_limit then return false end
  return tonumber(redis.call('HGET', K.requeues, test) or '0') < meta.max_requeues
end

local results, entries = {}, {}
for i = 8, #ARGV, 5 do
  local result = {test = ARGV[i], outcome = ARGV[i + 2], detail = ARGV[i + 3], item = ARGV[i + 4]}
  results[#results + 1] = result
  entries[#entries + 1] = lease_entry(ARGV[i + 1], ARGV[i])
end
local held = release_entries(entries)
if meta.groups then
  local freed = {}
  for i, result in ipairs(results) do
    if held[i] then freed[#freed + 1] = result.test end
  end
  free_slots(freed)
end

local statuses, finals, final_at = {}, {}, {}
for i, result in ipairs(results) do
  local test, outcome = result.test, result.outcome
  local failed = outcome == 'failed' or outcome == 'errored'
  if not held[i] then
    statuses[i] = 'discarded'
    redis.call('HINCRBY', K.stats, 'discarded', 1)
    wrote(K.stats, 's')
  elseif failed and requeue_allowed(test) then
    meta.requeued = meta.requeued + 1
    set_meta('requeued', meta.requeued)
    redis.call('HINCRBY', K.requeues, test, 1)
    redis.call('HSET', K.requeued_by, test, SESSION .. ':' .. ctx.now)
    redis.call('HSET', K.failures, test, result.detail)
    pushed(redis.call('LPUSH', K.queue, test), 1)
    wrote(K.requeues, 'q'); wrote(K.requeued_by, 'b'); wrote(K.failures, 'f')
    statuses[i] = 'requeued'
  else
    if meta.requeued > 0 and redis.call('HEXISTS', K.requeues, test) == 1 then
      -- A requeued run that passes makes a failure flaky; one that is skipped proves nothing, so the
      -- failure stands (its detail was kept when it was requeued).
      if outcome == 'passed' then outcome = 'flaky' end
      if outcome == 'skipped' then outcome = 'failed' end
    end
    finals[#finals + 1] = {test, outcome}
    final_at[#finals] = i
  end
end
for j, status in ipairs(decide_all(finals)) do
  local i = final_at[j]
  statuses[i] = status
  local outcome = results[i].outcome
  if status ~= 'duplicate' and (outcome == 'failed' or outcome == 'errored') then
    redis.call('HSET', K.failures, results[i].test, results[i].detail)
    wrote(K.failures, 'f')
  end
end

-- The timeline's `A` record: a requeued run's letter is `q`, a discarded one's upper case.
local recorded, acked = {}, 'A'
for i, result in ipairs(results) do
  recorded[i] = {result.test, statuses[i]}
  local item = result.item
  if statuses[i] == 'requeued' then item = string.gsub(item, '%a', 'q', 1) end
  if statuses[i] == 'discarded' then item = string.gsub(item, '%a', string.upper, 1) end
  acked = acked .. ' ' .. item
end
if #results > 0 then record(acked) end
local reply = reservation(reserve(ARGV[7], ctx), ctx)
reply.recorded = recorded
return close(cjson.encode(reply), true)
