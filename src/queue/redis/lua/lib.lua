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

-- The bound on a build's timeline in bytes (`record::CAP` in src/timeline/record.rs).
local TIMELINE_CAP = 134217728

-- Appends `line` (records of src/timeline/record.rs's format) to the build's timeline `key`
-- under the header of `session` at `now`; gives the key `ttl` ms when given. For the scripts
-- that run a few times per worker (the election's): the per-test ones batch theirs.
local function timeline_append(key, session, now, line, ttl)
  redis.call('APPEND', key, '@' .. now .. ' ' .. string.sub(session, 1, 12) .. '\n' .. line .. '\n')
  if ttl then redis.call('PEXPIRE', key, ttl) end
end
