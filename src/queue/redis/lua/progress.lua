-- PROGRESS: everything the report polls, in one round trip, for the generation it follows.
-- KEYS[1] state, KEYS[2] aborted, KEYS[3] workers, then the followed generation's KEYS[4] meta,
-- KEYS[5] queue, KEYS[6] running, KEYS[7] processed (any names before a generation is known),
-- then the build's KEYS[8] results and KEYS[9] mismatched.
-- Replies JSON {state, abort, total (-1 before a commit, or once the meta is lost), queued,
-- running, processed, alive, registered, timeout (the heartbeat timeout, ms), existed}: alive
-- counts worker sessions heard from within the heartbeat timeout, in server time; registered
-- counts every session that joined; existed is 1 when the state is absent while results or a
-- mismatch remain, which only a committed generation records (the state was lost).
local meta = redis.call('HMGET', KEYS[4], 'total', 'heartbeat-timeout-ms')
local timeout = tonumber(meta[2] or '0')
local alive = 0
local registered = each_live_session(KEYS[3], now_ms(), timeout, function() alive = alive + 1 end)
-- The running set holds one '' entry besides the tests, once committed.
local running = redis.call('ZCARD', KEYS[6])
if running > 0 then running = running - 1 end
local state = redis.call('GET', KEYS[1])
local existed = 0
if not state and redis.call('EXISTS', KEYS[8], KEYS[9]) > 0 then existed = 1 end
return cjson.encode({
  state = state or '',
  abort = redis.call('GET', KEYS[2]) or '',
  total = tonumber(meta[1] or '-1'),
  queued = redis.call('LLEN', KEYS[5]),
  running = running,
  processed = redis.call('SCARD', KEYS[7]),
  alive = alive,
  registered = registered,
  timeout = timeout,
  existed = existed,
})
