-- release: a stopping worker gives back the jobs leased to it, unchanged, so they run elsewhere;
-- each new entry carries the job's id (`i`) and is indexed.
-- KEYS[1] -> stream
-- KEYS[2] -> jobs index hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> consumer name of the stopping worker
-- ARGV[3] -> the most entries to release in this call (bounded: callers loop while it is reached)
-- ARGV[4] -> the queue's name (a job without an id of its own is `<queue>/<entry id>`)
-- returns the number of entries released
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  if entry[1] then
    local fields, job = moved_fields(entry[1][2], ARGV[4], id, 0)
    local new = redis.call('XADD', KEYS[1], '*', unpack(fields))
    if job then
      redis.call('HSET', KEYS[2], job, 'e:' .. new)
    end
  end
end
return #pending
