-- promote_due: delayed jobs and retries whose time has come move to the stream, and their
-- index entries to the new stream entry.
-- KEYS[1] -> stream
-- KEYS[2] -> scheduled sorted set
-- KEYS[3] -> retry sorted set
-- KEYS[4] -> jobs index hash
-- ARGV[1] -> now, ms since epoch
-- ARGV[2] -> the most jobs to move in this call (bounded: callers loop while it is reached)
-- returns {moved, next_due}: next_due is the earliest score left in either set, or -1 if none
local limit = tonumber(ARGV[2])
local moved = 0
for i = 2, 3 do
  if moved < limit then
    local due = redis.call('ZRANGE', KEYS[i], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, limit - moved)
    for _, env in ipairs(due) do
      local entry = redis.call('XADD', KEYS[1], '*', 'e', env)
      redis.call('ZREM', KEYS[i], env)
      local id = envelope_id(env)
      if id then
        redis.call('HSET', KEYS[4], id, 'e:' .. entry)
      end
      moved = moved + 1
    end
  end
end
local next_due = -1
for i = 2, 3 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local score = tonumber(first[2])
    if next_due < 0 or score < next_due then
      next_due = score
    end
  end
end
return {moved, next_due}
