-- complete: running jobs finished; they are acknowledged and counted once, however often the
-- same batch is sent again (a reply lost to a timeout, a retried pipeline).
-- KEYS[1] -> stream
-- KEYS[2] -> stats hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> '1' to delete the entries now, '0' to leave them to trim_acked.lua
-- ARGV[3..] -> stream entry ids of the running copies (at most the caller's batch size)
-- returns how many were still leased, now acknowledged (0 for a replay): what `completed` grew by
if #ARGV < 3 then
  return 0
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
if ARGV[2] == '1' then
  redis.call('XDEL', KEYS[1], unpack(ARGV, 3))
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', acked)
end
return acked
