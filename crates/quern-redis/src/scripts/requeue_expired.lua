-- requeue_expired: jobs whose lease expired (their worker died or lost Redis) go back to the
-- queue as new entries, with their lease-expiry count raised by one.
-- KEYS[1] -> stream
-- ARGV[1] -> consumer group
-- ARGV[2] -> lease duration, ms: entries idle at least this long have expired
-- ARGV[3] -> the most entries to requeue in this call (bounded: callers loop while it is reached)
-- returns the number of entries handled
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', ARGV[3])
for _, p in ipairs(pending) do
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  if entry[1] then
    local fields = entry[1][2]
    local env, r = nil, 0
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then env = fields[i + 1] elseif fields[i] == 'r' then r = tonumber(fields[i + 1]) or 0 end
    end
    if env then
      redis.call('XADD', KEYS[1], '*', 'e', env, 'r', r + 1)
    end
  end
end
return #pending
