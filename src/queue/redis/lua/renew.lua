-- RENEW: extend the setup lock only while it is still this leader's (compare-and-set), so a
-- leader that was paused past its TTL learns it lost the lock instead of stealing it back. The
-- queue staged so far is kept alive with it: a listing or staging slower than the keys' TTL
-- must not lose what was staged before the commit.
-- KEYS[1] state, KEYS[2] the generation's queue. ARGV[1] the leader's setup value, ARGV[2] its
-- ready value, ARGV[3] lock TTL ms, ARGV[4] key TTL ms.
-- Replies 1 renewed, 2 already committed (its own ready value), 0 lost.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
if current == ARGV[2] then return 2 end
return 0
