-- lib.lua: helpers any script may use (included before the script's own code).

-- Server time in ms: worker clocks drift, and a worker whose clock runs ahead must not take
-- everyone's tests.
-- The last TIME read by `now_ms`, whose strings the timeline's headers carry as they are
-- (turning a number into text costs a `sprintf`).
local NOW_TIME = {'0', '0'}
local function now_ms()
  local t = redis.call('TIME')
  NOW_TIME = t
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

-- The header of a chunk of the timeline: `@<s>.<µs> <session's first 12 characters>`, the time
-- of the last `now_ms`.
local function timeline_header(session)
  return '@' .. NOW_TIME[1] .. '.' .. NOW_TIME[2] .. ' ' .. string.sub(session, 1, 12) .. '\n'
end

-- Appends `line` (records of src/timeline/record.rs's format) to the build's timeline `key`
-- under the header of `session` at the last `now_ms`; gives the key `ttl` ms when given. For
-- the scripts that run a few times per worker (the election's): the per-test ones batch theirs.
local function timeline_append(key, session, line, ttl)
  redis.call('APPEND', key, timeline_header(session) .. line .. '\n')
  if ttl then redis.call('PEXPIRE', key, ttl) end
end
