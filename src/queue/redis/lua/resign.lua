-- RESIGN: a leader stopped (SIGINT, SIGTERM) before committing gives its setup lock up at once,
-- so the others elect a new leader now instead of waiting out the lock's TTL; its staged keys
-- go with it. Compare-and-delete: a lock that is no longer this leader's is left alone.
-- KEYS[1] state, KEYS[2..] the generation's keys. ARGV[1] the leader's setup value.
-- Replies 1 resigned, 0 the lock was not its own.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
return 1
