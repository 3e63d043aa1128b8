-- requeue_expired: jobs whose lease expired (their worker died or lost Redis) go back to the
-- queue as new entries, with their lease-expiry count raised by one, their id written beside
-- the envelope (`i`) and indexed -> the new entry.
-- KEYS[1] -> stream
-- KEYS[2] -> jobs index hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> lease duration, ms: entries idle at least this long have expired
-- ARGV[3] -> the most entries to requeue in this call (bounded: callers loop while it is reached)
-- ARGV[4] -> the queue's name (a job without an id of its own is `<queue>/<entry id>`)
-- returns the number of entries handled
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', ARGV[3])
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  if entry[1] then
    local fields, job = moved_fields(entry[1][2], ARGV[4], id, 1)
    local new = redis.call('XADD', KEYS[1], '*', unpack(fields))
    if job then
      redis.call('HSET', KEYS[2], job, 'e:' .. new)
    end
  end
end
return #pending
