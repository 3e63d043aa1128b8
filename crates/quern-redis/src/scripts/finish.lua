-- finish: a running job ended and its status is kept for a while (a completed job whose type
-- keeps results, or a cancelled one). Safe to send again: nothing is written unless the entry
-- was still leased.
-- KEYS[1] -> stream
-- KEYS[2] -> stats hash
-- KEYS[3] -> jobs index hash
-- KEYS[4] -> the job's finished record (`done:<id>`)
-- KEYS[5] -> the job's cancel request (`cancel:<job id>`)
-- ARGV[1] -> consumer group
-- ARGV[2] -> stream entry id
-- ARGV[3] -> job id
-- ARGV[4] -> finished record JSON
-- ARGV[5] -> how long it is kept, ms
-- ARGV[6] -> '1' when cancelled (counted as `cancelled`), '0' when completed
-- ARGV[7] -> '1' to delete the entry now, '0' to leave it to trim_acked.lua
-- returns 1 when settled here, 0 when the entry was no longer leased (a replay)
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
redis.call('DEL', KEYS[5])
if ARGV[6] == '1' then
  redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
else
  redis.call('HINCRBY', KEYS[2], 'completed', 1)
end
if ARGV[7] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1
