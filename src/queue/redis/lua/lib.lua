-- lib.lua: helpers any script may use (included before the script's own code).

-- Server time in ms: worker clocks drift, and a worker whose clock runs ahead must not take
-- everyone's tests.
local function now_ms()
  local t = redis.call('TIME')
  -- Arithmetic reads the digits once; tonumber reads them twice.
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- The worker sessions of hash `key` (session -> `<ms>:<worker>`, or `left:<ms>:<worker>` once
-- it left) heard from within `timeout` ms: calls `each(session, worker)` for each live one and
-- returns how many sessions the hash holds in all.
local function each_live_session(key, now, timeout, each)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local last, worker = string.match(all[i + 1], '^(%d+):(.*)$')
    if last and now - tonumber(last) < timeout then each(all[i], worker) end
  end
  return #all / 2
end

-- The test of a running entry, `<lease>:<test>`: a lease holds no colon.
local function entry_test(entry) return string.match(entry, '^[^:]*:(.*)$') end
