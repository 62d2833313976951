-- STAGE: append one batch of test ids to a generation's queue while the lock is still this
-- leader's; each batch names the position it starts at, so a batch re-sent after a lost reply is
-- recognised and never pushed twice. Also renews the lock.
-- KEYS[1] state, KEYS[2] queue, KEYS[3] timeline. ARGV[1] setup value, ARGV[2] position,
-- ARGV[3] lock TTL ms, ARGV[4] key TTL ms, ARGV[5] session, ARGV[6] how many tests were listed,
-- ARGV[7..] ids. The first batch records `S <listed>` in the timeline: listing ended, staging
-- starts.
-- Replies the queue length after the batch, -1 when the lock was lost, -2 when the position does
-- not match (a batch went missing: a bug).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local position = tonumber(ARGV[2])
local count = #ARGV - 6
local length = redis.call('LLEN', KEYS[2])
if length == position then
  if position == 0 then
    now_ms()
    timeline_append(KEYS[3], ARGV[5], 'S ' .. ARGV[6], ARGV[4])
  end
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 7))
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return length + count
end
if length == position + count then return length end
return -2
