-- RESIGN: a worker stopped (SIGINT, SIGTERM) or failed before it joined leaves as any worker does:
-- its session is marked `left:`, so the report does not wait out its heartbeat timeout. A leader
-- that has not committed also gives its setup lock up at once, so the others elect a new leader
-- now instead of waiting out the lock's TTL; its staged keys go with it. Compare-and-delete: a
-- lock that is no longer this leader's is left alone.
-- KEYS[1] state, KEYS[2] workers, KEYS[3] timeline, KEYS[4..] the generation's keys (none when
-- not leading). ARGV[1] the leader's setup value ('' when not leading), ARGV[2] session,
-- ARGV[3] worker, ARGV[4] how it leaves (the timeline's `X` letter: `t` stopped, `f` failed),
-- recorded when the timeline exists (HELLO made it, with its TTL).
-- Replies 1 resigned, 0 the lock was not its own (or it led nothing).
local now = now_ms()
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], 'left:' .. now .. ':' .. ARGV[3])
end
if redis.call('EXISTS', KEYS[3]) == 1 then timeline_append(KEYS[3], ARGV[2], 'X ' .. ARGV[4]) end
if ARGV[1] == '' or redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], unpack(KEYS, 4))
return 1
