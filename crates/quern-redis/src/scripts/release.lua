-- release: a stopping worker gives back the jobs leased to it, unchanged, so they run elsewhere.
-- KEYS[1] -> stream
-- ARGV[1] -> consumer group
-- ARGV[2] -> consumer name of the stopping worker
-- ARGV[3] -> the most entries to release in this call (bounded: callers loop while it is reached)
-- returns the number of entries released
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  if entry[1] then
    redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
  end
end
return #pending
