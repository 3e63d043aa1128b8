-- complete: running jobs finished; they are acknowledged and counted once, however often the
-- same batch is sent again (a reply lost to a timeout, a retried pipeline), and the index
-- entries of those that had one go.
-- KEYS[1] -> stream
-- KEYS[2] -> stats hash
-- KEYS[3] -> jobs index hash
-- ARGV[1] -> consumer group
-- ARGV[2] -> '1' to delete the entries now, '0' to leave them to trim_acked.lua
-- ARGV[3] -> n, how many plain entries follow (jobs found by their entry alone)
-- ARGV[4 .. 3+n] -> their stream entry ids
-- ARGV[4+n ..] -> pairs: stream entry id, job id (jobs with an index entry, acknowledged one by
--                 one so that only a job still leased here loses its index entry)
-- at most the caller's batch size of entries in all
-- returns how many were still leased, now acknowledged (0 for a replay): what `completed` grew by
local n = tonumber(ARGV[3])
local delete = ARGV[2] == '1'
local acked = 0
if n > 0 then
  acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n))
  if delete then
    redis.call('XDEL', KEYS[1], unpack(ARGV, 4, 3 + n))
  end
end
for i = 4 + n, #ARGV - 1, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    acked = acked + 1
    redis.call('HDEL', KEYS[3], ARGV[i + 1])
    if delete then
      redis.call('XDEL', KEYS[1], ARGV[i])
    end
  end
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', acked)
end
return acked
