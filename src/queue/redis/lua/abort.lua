-- ABORT: end the build for every worker and the report (a leader that cannot list the tests, or
-- an election budget spent), and free the lock if this worker holds it.
-- KEYS[1] state, KEYS[2] aborted. ARGV[1] abort record (JSON), ARGV[2] key TTL ms, ARGV[3] the
-- caller's setup value ('' if it leads nothing).
-- Replies the abort record in force (the first one wins).
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[1]) == ARGV[3] then redis.call('DEL', KEYS[1]) end
return redis.call('GET', KEYS[2])
