-- ABORT: end the build for every worker and the report. Three causes, three rules:
--  * 'leader' (a leader that cannot list its tests): only while the caller still holds the
--    setup lock; a leader that lost its lock aborts nothing, the build belongs to another.
--  * 'unready' (an election budget spent): only while no generation is ready; a build that
--    got its queue meanwhile goes on.
--  * 'always' (the build's state was lost): always, and the state is deleted, so workers of a
--    generation elected after the loss go stale and meet the record too. The record is written
--    into whatever Redis holds now, so a worker joining later learns the build was lost
--    instead of starting it again.
-- KEYS[1] state, KEYS[2] aborted. ARGV[1] abort record (JSON), ARGV[2] key TTL ms, ARGV[3] the
-- caller's setup value ('' if it leads nothing), ARGV[4] the rule.
-- Replies JSON {abort = the record in force} (the first one wins), or {refused = state}.
local state = redis.call('GET', KEYS[1])
local rule = ARGV[4]
if rule == 'leader' and state ~= ARGV[3] then
  return cjson.encode({refused = state or ''})
end
if rule == 'unready' and state and string.sub(state, 1, 6) == 'ready:' then
  return cjson.encode({refused = state})
end
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if rule == 'always' or (ARGV[3] ~= '' and state == ARGV[3]) then redis.call('DEL', KEYS[1]) end
return cjson.encode({abort = redis.call('GET', KEYS[2])})
