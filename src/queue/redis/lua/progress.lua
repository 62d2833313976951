-- PROGRESS: everything the report polls, in one round trip, for the generation it follows.
-- KEYS[1] state, KEYS[2] aborted, KEYS[3] workers, then the followed generation's KEYS[4] meta,
-- KEYS[5] queue, KEYS[6] running, KEYS[7] processed (any names before a generation is known),
-- KEYS[8] joined, KEYS[9] nothing-to-retry, then the build's KEYS[10] results and KEYS[11]
-- mismatched. ARGV[1] the retry round the report follows ('' for
-- none): once that round re-opened the generation, the sessions that left before it are the
-- finished build's, not the round's, and are not counted.
-- Replies JSON {state, abort, total (-1 before a commit, or once the meta is lost), queued,
-- running, processed, alive, registered, left, joining, timeout (the heartbeat timeout, ms),
-- nothing_to_retry}: registered counts the sessions that joined (of the round), left those of
-- them that said they left, alive those heard from within the heartbeat timeout, in server
-- time, that did not leave, and joining the live ones not yet in `joined` (still comparing
-- their list with the build's); existed is 1 when the state is absent while results or a
-- mismatch remain, which only a committed generation records (the state was lost).
local meta = redis.call('HMGET', KEYS[4], 'total', 'heartbeat-timeout-ms')
local timeout = tonumber(meta[2] or '0')
local since = 0
if ARGV[1] ~= '' then
  since = tonumber(redis.call('HGET', KEYS[4], 'retry:' .. ARGV[1]) or '0')
end
local now = now_ms()
local alive, registered, left, joining = 0, 0, 0, 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local value = all[i + 1]
  local at = string.match(value, '^left:(%d+):')
  local said_left = at ~= nil
  if not said_left then at = string.match(value, '^(%d+):') end
  at = tonumber(at)
  if at and at >= since then
    registered = registered + 1
    if said_left then
      left = left + 1
    elseif now - at < timeout then
      alive = alive + 1
      if redis.call('SISMEMBER', KEYS[8], all[i]) == 0 then joining = joining + 1 end
    end
  end
end
-- The running set holds one '' entry besides the tests, once committed.
local running = redis.call('ZCARD', KEYS[6])
if running > 0 then running = running - 1 end
local state = redis.call('GET', KEYS[1])
local existed = 0
if not state and redis.call('EXISTS', KEYS[10], KEYS[11]) > 0 then existed = 1 end
return cjson.encode({
  state = state or '',
  abort = redis.call('GET', KEYS[2]) or '',
  total = tonumber(meta[1] or '-1'),
  queued = redis.call('LLEN', KEYS[5]),
  running = running,
  processed = redis.call('SCARD', KEYS[7]),
  alive = alive,
  registered = registered,
  left = left,
  joining = joining,
  timeout = timeout,
  nothing_to_retry = redis.call('GET', KEYS[9]) or '',
  existed = existed,
})
