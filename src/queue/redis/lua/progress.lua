-- PROGRESS: everything the report polls, in one round trip, for the generation it follows.
-- KEYS[1] state, KEYS[2] aborted, KEYS[3] workers, then the followed generation's KEYS[4] meta,
-- KEYS[5] queue, KEYS[6] running, KEYS[7] processed (any names before a generation is known).
-- Replies JSON {state, abort, total (-1 before a commit, or once the meta is lost), queued,
-- running, processed, alive, registered, timeout (the heartbeat timeout, ms)}: alive counts worker sessions heard from within the
-- heartbeat timeout, in server time; registered counts every session that joined.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HMGET', KEYS[4], 'total', 'heartbeat-timeout-ms')
local timeout = tonumber(meta[2] or '0')
local alive, registered = 0, 0
local all = redis.call('HGETALL', KEYS[3])
for i = 2, #all, 2 do
  registered = registered + 1
  local last = tonumber(string.match(all[i], '^(%d+):'))
  if last and now - last < timeout then alive = alive + 1 end
end
return cjson.encode({
  state = redis.call('GET', KEYS[1]) or '',
  abort = redis.call('GET', KEYS[2]) or '',
  total = tonumber(meta[1] or '-1'),
  queued = redis.call('LLEN', KEYS[5]),
  running = redis.call('ZCARD', KEYS[6]),
  processed = redis.call('SCARD', KEYS[7]),
  alive = alive,
  registered = registered,
  timeout = timeout,
})
