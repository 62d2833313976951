-- RESERVE(k): hands out up to k tests, each under a fresh lease.
-- ARGV[6] k. Replies JSON {status = tests|empty|done|stale|lost, tests = {{id, lease}...}}.
local ctx, early = open(true, false)
if not ctx then return early end
return close(cjson.encode(reservation(reserve(tonumber(ARGV[6]), ctx), ctx)), true)
