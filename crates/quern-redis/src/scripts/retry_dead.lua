-- retry_dead: a dead job goes back to its queue for a fresh set of attempts, indexed by its id.
-- KEYS[1] -> stream
-- KEYS[2] -> dead sorted set
-- KEYS[3] -> dead records hash
-- KEYS[4] -> jobs index hash
-- ARGV[1] -> job id (the dead set's member)
-- ARGV[2] -> envelope JSON for the new first attempt (carrying the job id)
-- ARGV[3] -> the job id the envelope carries (the index's key; the dead id unless the envelope
--            has another of its own)
-- returns the new stream entry id, or false when the job was no longer dead (nothing written)
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return false
end
redis.call('HDEL', KEYS[3], ARGV[1])
local entry = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[4], ARGV[3], 'e:' .. entry)
return entry
