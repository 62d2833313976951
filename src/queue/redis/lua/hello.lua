-- HELLO: a worker session announces itself before the election, and learns whether another live
-- session already uses its worker id (a CI matrix whose legs all got one default id): liveness
-- and leaving are per session, so that is safe, but worth a warning.
-- KEYS[1] workers, KEYS[2] timeline. ARGV[1] session, ARGV[2] worker, ARGV[3] key TTL ms,
-- ARGV[4] heartbeat timeout ms. Records `J <worker>` in the timeline.
-- Replies the number of other live sessions with this worker id.
local now = now_ms()
local twins = 0
each_live_session(KEYS[1], now, tonumber(ARGV[4]), function(session, worker)
  if session ~= ARGV[1] and worker == ARGV[2] then twins = twins + 1 end
end)
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
timeline_append(KEYS[2], ARGV[1], 'J ' .. string.gsub(ARGV[2], '[\r\n]', ' '), ARGV[3])
return twins
