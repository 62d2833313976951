-- HELLO: a worker session announces itself before the election, and learns whether another live
-- session already uses its worker id (a CI matrix whose legs all got one default id): liveness
-- and leaving are per session, so that is safe, but worth a warning.
-- KEYS[1] workers. ARGV[1] session, ARGV[2] worker, ARGV[3] key TTL ms, ARGV[4] heartbeat
-- timeout ms. Replies the number of other live sessions with this worker id.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local twins = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local last, worker = string.match(all[i + 1], '^(%d+):(.*)$')
  if all[i] ~= ARGV[1] and worker == ARGV[2] and now - tonumber(last) < tonumber(ARGV[4]) then
    twins = twins + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return twins
