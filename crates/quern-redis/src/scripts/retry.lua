-- retry: a running job failed and waits for its next attempt (or asked to run later: a snooze,
-- which is not a failure); its index entry points at the retry set.
-- KEYS[1] -> stream
-- KEYS[2] -> retry sorted set
-- KEYS[3] -> wake list
-- KEYS[4] -> stats hash
-- KEYS[5] -> jobs index hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> stream entry id of the running copy
-- ARGV[3] -> due time of the next attempt, ms since epoch
-- ARGV[4] -> envelope JSON of the next attempt (carrying the job id, so its promotion keeps it)
-- ARGV[5] -> '1' to count a failure (a retry), '0' not to (a snooze)
-- ARGV[6] -> job id (the envelope's own when it has one: promotion indexes the job by that)
-- returns 1, or 0 when the entry was no longer leased to the group (its lease had expired and
-- another copy is already queued, or this is a replay): then nothing is written.
--
-- A script that fails halfway keeps what it already did, so the order matters: the lease is
-- checked without acknowledging, the next attempt is written, and only then is the running copy
-- acknowledged. A write Redis refuses (a key of the wrong type) leaves the job leased, never lost.
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[6], 'r:' .. ARGV[3] .. ':' .. ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 0)
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
end
return 1
