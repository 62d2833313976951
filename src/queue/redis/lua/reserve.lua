-- RESERVE(k): hands out up to k tests, each under a fresh lease.
-- ARGV[6] k. Replies JSON {status = tests|empty|done|stale, tests = {{id, lease}...}}.
local cached = cached_reply()
if cached then return cached end
if is_stale() then return cjson.encode({status = 'stale'}) end
keep_state()
local now = now_ms()
seen(now)
local reply = cjson.encode(reservation(reserve(tonumber(ARGV[6]), now)))
remember(reply)
expire_touched()
return reply
