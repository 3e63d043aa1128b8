-- sync_periodic: makes a queue's known periodic schedules the ones a starting worker declares.
-- Schedules it declares keep their state (no fire is repeated or lost); a new one starts at `now`
-- (it fires for due times after it became known, not for the past); one it no longer declares
-- is removed with its state.
-- KEYS[1] -> the queue's periodic hash (schedule name -> description JSON)
-- ARGV[1] -> now, ms since the epoch
-- ARGV[2] -> prefix of the schedules' state hashes (`<prefix>:{<queue>}:periodic:`); each state
--            key shares the queue's hash tag, so it lives in KEYS[1]'s slot
-- ARGV[3], ARGV[4], ... -> name, description pairs (a worker declares a handful: bounded)
-- returns the names removed
local declared = {}
for i = 3, #ARGV, 2 do
  declared[ARGV[i]] = true
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSETNX', ARGV[2] .. ARGV[i], 'last_due', ARGV[1])
end
local removed = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not declared[name] then
    redis.call('HDEL', KEYS[1], name)
    redis.call('DEL', ARGV[2] .. name)
    table.insert(removed, name)
  end
end
return removed
