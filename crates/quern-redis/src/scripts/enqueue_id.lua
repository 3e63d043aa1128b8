-- enqueue_id: a job with an id of its own enters its queue once, however often it is sent, and
-- not at all while another job holds its unique key.
-- KEYS[1] -> stream
-- KEYS[2] -> scheduled sorted set
-- KEYS[3] -> wake list
-- KEYS[4] -> jobs index hash
-- KEYS[5] -> dead records hash
-- KEYS[6] -> the id's finished record (`done:<id>`)
-- KEYS[7] -> the unique key's lock (`unique:<key>`; any key when ARGV[4] is '')
-- ARGV[1] -> job id
-- ARGV[2] -> envelope JSON (it carries the id)
-- ARGV[3] -> due time, ms since epoch, or '' to run now
-- ARGV[4] -> the states the unique lock holds in ('q' queued or delayed, 'a' running, 'r'
--            retrying), or '' for no unique key
-- ARGV[5] -> the lock's TTL in ms, or '' for none
-- ARGV[6] -> consumer group (to tell a running holder from a queued one)
-- ARGV[7] -> '1' when the id was just made by the producer (nothing can hold it: the checks of
--            an id already known are skipped), '0' for a caller's id
-- returns {1, entry id or ''} when written (the stream entry, or '' when delayed), else
--   {0, where}: where the job with this id already is: 'e' (in the stream: queued or running),
--   's' (delayed), 'r' (waiting for a retry), 'd' (dead), 'f' (finished, its record kept); or
--   {0, 'u', holder id}: another job holds the unique key. A lock whose holder no longer
--   exists, or is in none of the lock's states, is taken over: it never outlives its job.
if ARGV[7] ~= '1' then
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
end
if ARGV[4] ~= '' then
  local holder = redis.call('GET', KEYS[7])
  if holder and holder ~= ARGV[1] then
    local at = redis.call('HGET', KEYS[4], holder)
    local state = nil
    if at then
      local tag = string.sub(at, 1, 1)
      if tag == 's' then
        state = 'q'
      elseif tag == 'r' then
        state = 'r'
      elseif tag == 'e' then
        local entry = string.sub(at, 3)
        state = 'q'
        if last_delivered(KEYS[1], ARGV[6]) then
          local p = redis.call('XPENDING', KEYS[1], ARGV[6], entry, entry, 1)
          if p[1] then state = 'a' end
        end
      end
    end
    if state and string.find(ARGV[4], state, 1, true) then
      return {0, 'u', holder}
    end
  end
  if ARGV[5] ~= '' then
    redis.call('SET', KEYS[7], ARGV[1], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[7], ARGV[1])
  end
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
