-- dead_letter: a job that cannot or may not run again is kept, with why, in the dead set (which
-- finds it by id: its index entry goes).
-- KEYS[1] -> stream
-- KEYS[2] -> dead sorted set
-- KEYS[3] -> dead records hash
-- KEYS[4] -> stats hash
-- KEYS[5] -> jobs index hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> stream entry id of the running copy ('' when the job is not in the stream)
-- ARGV[3] -> job id
-- ARGV[4] -> dead record JSON
-- ARGV[5] -> now, ms since epoch
-- ARGV[6] -> the most dead jobs kept (count)
-- ARGV[7] -> the oldest dead job kept, ms since epoch
-- returns 1, or 0 when the entry was no longer leased to the group (nothing written)
--
-- As in retry.lua: the lease is checked without acknowledging, the record is written, and only
-- then is the running copy acknowledged, so a write Redis refuses leaves the job leased.
if ARGV[2] ~= '' and #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'dead', 1)
redis.call('HINCRBY', KEYS[4], 'failed', 1)
-- Retention, bounded per call: each call adds one job and removes up to 100.
local old = redis.call('ZRANGE', KEYS[2], '-inf', '(' .. ARGV[7], 'BYSCORE', 'LIMIT', 0, 100)
for _, id in ipairs(old) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, math.min(excess, 100) - 1)
  for _, id in ipairs(oldest) do
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return 1
