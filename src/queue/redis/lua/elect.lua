-- ELECT: take the setup lock if nobody holds it (SET NX PX), else say who does.
-- KEYS[1] state, KEYS[2] aborted, KEYS[3] results, KEYS[4] mismatched, KEYS[5] timeline.
-- ARGV[1] generation, ARGV[2] worker, ARGV[3] lock TTL in ms, ARGV[4] session, ARGV[5] key TTL
-- in ms, ARGV[6] `1` when the worker saw the last leader's lock lapse before a commit.
-- Records in the timeline: `D` after a lapse, then `W <gen>` (won) or `L <gen>` (another leads).
-- A worker that finds its own setup value is the leader: that is how a re-sent election (its
-- reply lost) recognises that it already won. A build aborted for good elects nobody, and so
-- does a build that was ready once: only a committed generation records results or a
-- mismatch, so with those still there an absent state was lost, not never set, and electing
-- would queue the build again and give it a fresh verdict.
-- Replies JSON {role = leader} | {role = aborted, abort} | {role = wait, state} | {role = lost}.
local aborted = redis.call('GET', KEYS[2])
if aborted then return cjson.encode({role = 'aborted', abort = aborted}) end
local mine = 'setup:' .. ARGV[1] .. ':' .. ARGV[2]
local current = redis.call('GET', KEYS[1])
local function record(line)
  if ARGV[6] == '1' then line = 'D\n' .. line end
  now_ms()
  timeline_append(KEYS[5], ARGV[4], line, ARGV[5])
end
if not current then
  if redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then return cjson.encode({role = 'lost'}) end
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[3])
  record('W ' .. ARGV[1])
  return cjson.encode({role = 'leader'})
end
if current == mine then return cjson.encode({role = 'leader'}) end
record('L ' .. (string.match(current, '^%a+:([^:]*)') or ''))
return cjson.encode({role = 'wait', state = current})
