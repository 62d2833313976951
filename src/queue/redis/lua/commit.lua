-- COMMIT: make the staged generation the build's queue, only if the lock is still this
-- leader's (compare-and-set): at most one generation is ever committed, and a stale leader's
-- staging is never read. A re-sent commit finds its own ready value and succeeds again. A build
-- aborted for everyone (its election budget spent, its state lost) is not committed, even by the
-- lock's holder.
-- KEYS[1] state, KEYS[2] meta, KEYS[3] queue, KEYS[4] aborted, KEYS[5] running, KEYS[6] results,
-- KEYS[7] timeline (records `C <total>`).
-- ARGV[1] setup value, ARGV[2] ready value, ARGV[3] key TTL ms, ARGV[4] total, ARGV[5] max
-- requeues per test, ARGV[6] build requeue limit, ARGV[7] heartbeat timeout ms, ARGV[8] digest
-- of the set of test ids (followers with a list of their own check theirs against it), ARGV[9]
-- the order the leader queued the tests in (`--order`, a random one with its seed), ARGV[10]
-- the leader's session, ARGV[11..] each resource group's name and limit (none without groups).
-- Replies 1 committed, 0 lost, -2 when the staged queue does not hold total ids (a bug).
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] then return 1 end
if current ~= ARGV[1] or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[4]) then return -2 end
local now = now_ms()
-- `fresh`: no test of this build has an outcome yet, so none popped from this queue can have
-- one from an earlier generation, and reservations need not look.
local fresh = 0
if redis.call('EXISTS', KEYS[6]) == 0 then fresh = 1 end
redis.call('HSET', KEYS[2], 'total', ARGV[4], 'max-requeues', ARGV[5], 'requeue-limit', ARGV[6],
  'heartbeat-timeout-ms', ARGV[7], 'list-digest', ARGV[8], 'order', ARGV[9], 'requeued', 0,
  'refreshed-at', now, 'scanned-at', now, 'fresh', fresh)
-- The running set's '' entry keeps it, and its TTL, while nothing runs.
-- Resource groups: ARGV[11..] pairs of group, limit.
if #ARGV > 10 then
  local fields = {'groups', '1'}
  for i = 11, #ARGV - 1, 2 do
    fields[#fields + 1] = 'group-limit:' .. ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
  redis.call('HSET', KEYS[2], unpack(fields))
end
redis.call('ZADD', KEYS[5], '+inf', '')
for _, key in ipairs({KEYS[2], KEYS[3], KEYS[5]}) do redis.call('PEXPIRE', key, ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
timeline_append(KEYS[7], ARGV[10], 'C ' .. ARGV[4], ARGV[3])
return 1
