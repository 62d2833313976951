-- HEARTBEAT(held): one call per interval for everything a worker holds (nothing, too: it records
-- the session as alive). Lease-fenced: only the tests this worker still holds are refreshed; the
-- others are reported back as lost (taken over while the worker could not be heard).
-- ARGV[7..] pairs of test id, lease. Replies JSON {status = ok|stale|lost, lost = {ids}, why}.
-- Liveness is build-wide: a worker still finishing a test of a replaced generation is alive and
-- about to rejoin, so the report must not take it for gone.
local ctx, early = open({alive_when_stale = true, always_seen = true})
if not ctx then return early end
local lost = {}
for i = 7, #ARGV, 2 do
  local entry = lease_entry(ARGV[i + 1], ARGV[i])
  if redis.call('ZSCORE', K.running, entry) then
    redis.call('ZADD', K.running, 'XX', ctx.now, entry)
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return close(cjson.encode({status = 'ok', lost = lost}), false)
