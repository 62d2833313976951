-- OBSERVE: read the build's state and abort marker in one round trip, for waiting followers and
-- the report. KEYS[1] state, KEYS[2] aborted.
-- Replies JSON {state = value or '', pttl, abort = value or ''}.
return cjson.encode({
  state = redis.call('GET', KEYS[1]) or '',
  pttl = redis.call('PTTL', KEYS[1]),
  abort = redis.call('GET', KEYS[2]) or '',
})
