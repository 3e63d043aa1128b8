-- retry_dead: a dead job goes back to its queue for a fresh set of attempts.
-- KEYS[1] -> stream
-- KEYS[2] -> dead sorted set
-- KEYS[3] -> dead records hash
-- ARGV[1] -> job id
-- ARGV[2] -> envelope JSON for the new first attempt
-- returns 1, or 0 when the job was no longer dead (nothing written)
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
return 1
