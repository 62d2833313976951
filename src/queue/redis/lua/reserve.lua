-- RESERVE(k): hands out up to k tests, each under a fresh lease.
-- ARGV[7] k (`max` or `max:budget:typical`, see `wanted`). Replies JSON {status = tests|empty|done|stale|lost|superseded,
-- tests = {{id, lease}...}, why (with lost)}.
local ctx, early = open({replay = true})
if not ctx then return early end
return close(cjson.encode(reservation(reserve(ARGV[7], ctx), ctx)), true)
