-- schedule: a job enters the delayed set, is indexed by its id, and an idle promoter is woken.
-- KEYS[1] -> scheduled sorted set
-- KEYS[2] -> wake list
-- KEYS[3] -> jobs index hash
-- ARGV[1] -> due time, ms since epoch
-- ARGV[2] -> envelope JSON (an envelope without an id is delayed too, but not indexed: it is
--            found by `<queue>/<entry id>` once promoted)
-- returns 1
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local id = envelope_id(ARGV[2])
if id then
  redis.call('HSET', KEYS[3], id, 's:' .. ARGV[1] .. ':' .. ARGV[2])
end
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
return 1
