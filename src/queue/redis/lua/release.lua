-- RELEASE(held): on shutdown or a fatal runner error, give held tests back to the head of the
-- queue at once instead of leaving them to the heartbeat timeout, and mark this session gone.
-- Lease-fenced, so releasing twice, or after a take-over, changes nothing. Generation-agnostic:
-- writing into an abandoned generation is harmless, and a stale worker must still leave.
-- ARGV[6..] pairs of test id, lease. Replies the number of tests given back.
local released = 0
for i = #ARGV - 1, 6, -2 do
  if holds(ARGV[i], ARGV[i + 1]) then
    redis.call('ZREM', K.running, ARGV[i])
    redis.call('HDEL', K.leases, ARGV[i])
    redis.call('LPUSH', K.queue, ARGV[i])
    touch(K.queue)
    released = released + 1
  end
end
redis.call('HSET', K.workers, SESSION, 'left:' .. now_ms() .. ':' .. WORKER)
touch(K.workers)
expire_touched()
return released
