-- OBSERVE: read the build's state and abort record in one round trip, for waiting followers and
-- stale workers. KEYS[1] state, KEYS[2] aborted, and for a stale worker KEYS[3], the meta key of
-- the generation it followed: a replaced generation keeps its keys, a wiped Redis does not.
-- Replies JSON {state = value or '', abort = value or '', previous = 1 if KEYS[3] exists}.
local previous = 0
if KEYS[3] then previous = redis.call('EXISTS', KEYS[3]) end
return cjson.encode({
  state = redis.call('GET', KEYS[1]) or '',
  abort = redis.call('GET', KEYS[2]) or '',
  previous = previous,
})
