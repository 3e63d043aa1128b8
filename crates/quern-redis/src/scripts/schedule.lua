-- schedule: a job enters the delayed set, and an idle promoter is woken.
-- KEYS[1] -> scheduled sorted set (or the retry set)
-- KEYS[2] -> wake list
-- ARGV[1] -> due time, ms since epoch
-- ARGV[2] -> envelope JSON
-- returns 1
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
return 1
