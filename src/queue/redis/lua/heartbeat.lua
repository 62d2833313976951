-- HEARTBEAT(held): one call per interval for everything a worker holds. Lease-fenced: only the
-- tests this worker still holds are refreshed; the others are reported back as lost (taken over
-- while the worker could not be heard).
-- ARGV[6..] pairs of test id, lease. Replies JSON {status = ok|stale, lost = {ids}}.
if is_stale() then return cjson.encode({status = 'stale'}) end
local now = now_ms()
seen(now)
local lost = {}
for i = 6, #ARGV, 2 do
  if holds(ARGV[i], ARGV[i + 1]) then
    redis.call('ZADD', K.running, 'XX', now, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
expire_touched()
return cjson.encode({status = 'ok', lost = lost})
