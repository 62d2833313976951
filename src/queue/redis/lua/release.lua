-- RELEASE(held): on shutdown, a fatal runner error or the worker's end, give held tests back to
-- the head of the queue at once instead of leaving them to the heartbeat timeout, and mark this
-- session gone. Lease-fenced, so releasing twice, or after a take-over, changes nothing. The one
-- per-test script without `open`: it checks neither staleness nor lost state (giving back into
-- an abandoned generation is harmless, and a stale or failing worker must still leave), and it
-- only sets the TTLs of what it writes.
-- ARGV[7] how the worker leaves (the timeline's `X` letter), ARGV[8] why a breaker stopped it
-- ('' when none did: then no `B` record), ARGV[9..] pairs of test id, lease. Replies the number
-- of tests given back.
local released, freed = 0, {}
for i = #ARGV - 1, 9, -2 do
  if redis.call('ZREM', K.running, lease_entry(ARGV[i + 1], ARGV[i])) == 1 then
    pushed(redis.call('LPUSH', K.queue, ARGV[i]), 1)
    released = released + 1
    freed[#freed + 1] = ARGV[i]
  end
end
if #freed > 0 and redis.call('HGET', K.meta, 'groups') == '1' then free_slots(freed) end
record_at = now_ms()
redis.call('HSET', K.workers, SESSION, 'left:' .. record_at .. ':' .. WORKER)
expire[K.workers] = true
if ARGV[8] ~= '' then record('B ' .. ARGV[8]) end
record('X ' .. ARGV[7])
expire[K.timeline] = true
close('', false)
return released
