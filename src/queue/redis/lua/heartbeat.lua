-- HEARTBEAT(held): one call per interval for everything a worker holds. Lease-fenced: only the
-- tests this worker still holds are refreshed; the others are reported back as lost (taken over
-- while the worker could not be heard).
-- ARGV[6..] pairs of test id, lease. Replies JSON {status = ok|stale|lost, lost = {ids}, why}.
-- Liveness is build-wide: a worker still finishing a test of a replaced generation is alive and
-- about to rejoin, so the report must not take it for gone.
local ctx, early = open(false, true)
if not ctx then return early end
local lost = {}
for i = 6, #ARGV, 2 do
  if holds(ARGV[i], ARGV[i + 1]) then
    redis.call('ZADD', K.running, 'XX', ctx.now, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return close(cjson.encode({status = 'ok', lost = lost}), false)
