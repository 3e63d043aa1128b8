-- enqueue_id: a job with a caller-supplied id enters its queue once, however often it is sent.
-- KEYS[1] -> stream
-- KEYS[2] -> scheduled sorted set
-- KEYS[3] -> wake list
-- KEYS[4] -> jobs index hash
-- KEYS[5] -> dead records hash
-- KEYS[6] -> the id's finished record (`done:<id>`)
-- ARGV[1] -> job id
-- ARGV[2] -> envelope JSON (it carries the id)
-- ARGV[3] -> due time, ms since epoch, or '' to run now
-- returns {1, entry id or ''} when written (the stream entry, or '' when delayed), else
--   {0, where}: where the job with this id already is: 'e' (in the stream: queued or running),
--   's' (delayed), 'r' (waiting for a retry), 'd' (dead), 'f' (finished, its record kept)
local where = redis.call('HGET', KEYS[4], ARGV[1])
if where then
  return {0, string.sub(where, 1, 1)}
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  return {0, 'd'}
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  return {0, 'f'}
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[4], ARGV[1], 's:' .. ARGV[3] .. ':' .. ARGV[2])
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 0)
  return {1, ''}
end
local entry = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], 'e:' .. entry)
return {1, entry}
