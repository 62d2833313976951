-- per_test.lua: what the per-test scripts (reserve, ack, heartbeat, release) share. They take the
-- same KEYS, in this order, so all of a build's keys (one hash tag, one cluster slot) are
-- declared:
--   KEYS[1] state      KEYS[2] workers    KEYS[3] results    KEYS[4] failures   KEYS[5] stats
--   KEYS[6] mismatched KEYS[7] queue      KEYS[8] running    KEYS[9] processed  KEYS[10] requeues
--   KEYS[11] requeued-by                  KEYS[12] meta      KEYS[13] failed    KEYS[14] flaky
--   KEYS[15] estimates                    KEYS[16] timeline  KEYS[17] groups
-- ARGV[1] generation, ARGV[2] worker, ARGV[3] session (one per process: two processes given one
-- worker id are two sessions), ARGV[4] request sequence, ARGV[5] key TTL in ms, ARGV[6] `1` when
-- the session's liveness is due to be recorded; the script's own arguments follow from ARGV[7].
--
-- `running` is a sorted set of `<lease>:<test>` scored by the holder's last heartbeat (server
-- ms), plus the entry '' at +inf that keeps the key (and its TTL) alive while nothing runs. A
-- lease is a token unique to one hand-out, so removing an entry is the fence: only its holder
-- names it.
--
-- Every per-test script runs `open`, its own work, then `close`, which keep, in this order, the
-- steps that make a script safe to re-send and keep keys from leaking:
--   open:  the staleness check (another generation is the build's); the lost-state check (the
--          generation's meta is gone); the cached reply of a re-sent request (it lives in the
--          meta); liveness when due; the TTL refresh of every key when due.
--   close: the reply remembered (for re-sent requests); the pending meta fields written in one
--          HSET; a TTL for every key this call created.
local K = {
  state = KEYS[1], workers = KEYS[2], results = KEYS[3], failures = KEYS[4], stats = KEYS[5],
  mismatched = KEYS[6], queue = KEYS[7], running = KEYS[8], processed = KEYS[9],
  requeues = KEYS[10], requeued_by = KEYS[11], meta = KEYS[12], failed = KEYS[13],
  flaky = KEYS[14], estimates = KEYS[15], timeline = KEYS[16], groups = KEYS[17],
}
local GEN, WORKER, SESSION, SEQ, TTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] + 0
local SEEN_DUE = ARGV[6] == '1'
local REPLY_FIELD, SEQ_FIELD = 'reply:' .. SESSION, 'seq:' .. SESSION
-- Leases are `<session's first 12 characters>.<request>.<n>.<server ms>`: unique to one
-- hand-out, and saying when it was handed out.
local LEASE_PREFIX = string.sub(SESSION, 1, 12) .. '.' .. SEQ .. '.'

local meta_writes = {}
local function set_meta(field, value) meta_writes[field] = value end

-- Keys created by this call get their TTL at `close`. A key that can never be emptied gets it
-- once per generation: `letter` names it in meta's `made` once it has one. The queue, which
-- empties, gets it whenever a push recreates it; `running` never empties (its '' entry).
local expire = {}
local made = ''
local function wrote(key, letter)
  if not string.find(made, letter, 1, true) then
    made = made .. letter
    set_meta('made', made)
    expire[key] = true
  end
end
local function pushed(length, count)
  if length == count then expire[K.queue] = true end
end
-- Every key of the build, at `close`: when due, and once more when a build ends (done or lost),
-- so that no key a deletion or eviction made the scripts recreate is left without one.
local function expire_all()
  for i = 1, #KEYS do expire[KEYS[i]] = true end
end

-- The generation's settings and counters, and the number of this session's last answered
-- request, in one read (numbers by arithmetic, which reads the digits once where tonumber reads
-- them twice; every field is ciq's own). Their absence, once the generation is ready, means Redis
-- lost the build: nil.
local function load_meta()
  local m = redis.call('HMGET', K.meta, 'total', 'heartbeat-timeout-ms', 'max-requeues',
    'requeue-limit', 'requeued', 'refreshed-at', 'scanned-at', 'made', 'fresh', SEQ_FIELD,
    'timeline-cap', 'groups')
  if not m[1] or not m[2] then return nil end
  made = m[8] or ''
  return {
    total = m[1] + 0, heartbeat_timeout = m[2] + 0,
    max_requeues = (m[3] or 0) + 0, requeue_limit = (m[4] or 0) + 0,
    requeued = (m[5] or 0) + 0, refreshed_at = (m[6] or 0) + 0,
    scanned_at = (m[7] or 0) + 0, fresh = m[9] == '1', answered = m[10],
    timeline_cap = (m[11] or TIMELINE_CAP) + 0, groups = m[12] == '1',
  }
end

-- A re-sent request (the reply was lost to a dropped connection) gets the reply of the first
-- delivery instead of being applied twice. A request older than the last one answered (held by a
-- blackholed connection and delivered after its re-sent copy and newer requests) is superseded:
-- applying it would hand out tests the worker never hears of.
-- Only the request's number is read on every call; the reply itself only for a re-sent one.
local function cached_reply(meta)
  local answered = meta.answered
  if not answered then return nil end
  if answered == SEQ then return redis.call('HGET', K.meta, REPLY_FIELD) end
  if answered + 0 > SEQ + 0 then return cjson.encode({status = 'superseded'}) end
  return nil
end

local function seen(now)
  redis.call('HSET', K.workers, SESSION, now .. ':' .. WORKER)
end

-- The build's timeline (src/timeline/record.rs has the format): this call's records (one string:
-- a table per call costs Lua more), appended in one APPEND under one header by `close`, as long as the timeline is under
-- the bound in meta's `timeline-cap` (the constant unless a test lowers it). The call that
-- finds it past the bound adds `!` and sets the bound to 0: nothing more is appended.
local records, record_at, record_cap = nil, nil, TIMELINE_CAP
local function record(line)
  if records then records = records .. line .. '\n' else records = line .. '\n' end
end
local function append_records()
  if not records or not record_at or record_cap == 0 then return end
  local header = timeline_header(SESSION)
  local length = redis.call('APPEND', K.timeline, header .. records)
  wrote(K.timeline, 't')
  if length > record_cap then
    redis.call('APPEND', K.timeline, header .. '!\n')
    set_meta('timeline-cap', 0)
  end
end

local function close(reply, remember)
  append_records()
  if remember then
    set_meta(SEQ_FIELD, SEQ)
    set_meta(REPLY_FIELD, reply)
  end
  local fields = {}
  for field, value in pairs(meta_writes) do
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
  if #fields > 0 then redis.call('HSET', K.meta, unpack(fields)) end
  for key in pairs(expire) do redis.call('PEXPIRE', key, TTL) end
  return reply
end

-- `open` returns the call's context, or nil and the reply to return at once. A working build
-- keeps every key alive, including those it only reads: all TTLs are refreshed once a quarter of
-- the TTL has passed since the last refresh.
local function open(options)
  local now = now_ms()
  if redis.call('GET', K.state) ~= 'ready:' .. GEN then
    if options.alive_when_stale then
      seen(now)
      redis.call('PEXPIRE', K.workers, TTL)
    end
    return nil, cjson.encode({status = 'stale'})
  end
  local meta = load_meta()
  if not meta then
    expire_all()
    return nil, close(cjson.encode({status = 'lost', why = "its generation's metadata is gone"}),
      false)
  end
  if options.replay then
    local cached = cached_reply(meta)
    if cached then return nil, cached end
  end
  record_at, record_cap = now, meta.timeline_cap
  if SEEN_DUE or options.always_seen then seen(now) end
  if now - meta.refreshed_at >= TTL / 4 then
    expire_all()
    set_meta('refreshed-at', now)
  end
  return {now = now, meta = meta}
end

local function lease_entry(lease, test) return lease .. ':' .. test end

-- Resource groups, only in a generation that has some (meta's `groups` is '1'): `groups` maps a
-- grouped test to its group; meta's `group-limit:<group>` is how many of its tests may run at
-- once across the build, `group-held:<group>` how many running entries hold one of its slots.
-- A slot is taken with the running entry of a hand-out and freed with the removal of that entry
-- by whoever removed it (a ZREM that answered 1: the lease's fence), so a late ack, a second
-- release or a take-over never frees a slot twice. Each group's figures are read once a call.
local slots = {}
local function slot(group)
  local s = slots[group]
  if not s then
    local m = redis.call('HMGET', K.meta, 'group-limit:' .. group, 'group-held:' .. group)
    s = {limit = tonumber(m[1]), held = tonumber(m[2]) or 0}
    slots[group] = s
  end
  return s
end
local function hold_slot(group, delta)
  local s = slot(group)
  s.held = math.max(s.held + delta, 0)
  set_meta('group-held:' .. group, s.held)
end
-- Frees the slots of `tests`, whose running entries this call removed.
local function free_slots(tests)
  if #tests == 0 then return end
  local groups = redis.call('HMGET', K.groups, unpack(tests))
  for i = 1, #tests do
    if groups[i] then hold_slot(groups[i], -1) end
  end
end
