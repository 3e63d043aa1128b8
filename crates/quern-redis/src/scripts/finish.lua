-- finish: running jobs ended and their status is kept for a while (completed jobs whose type
-- keeps results, cancelled jobs). Safe to send again: a job no longer leased (a replay) writes
-- nothing and counts nothing.
-- KEYS[1] -> stream
-- KEYS[2] -> stats hash
-- KEYS[3] -> jobs index hash
-- KEYS[2+2i], KEYS[3+2i] -> job i's finished record (`done:<id>`) and cancel request
--   (`cancel:<id>`), for i = 1 .. n
-- ARGV[1] -> consumer group
-- ARGV[2] -> '1' to delete the entries now, '0' to leave them to trim_acked.lua
-- ARGV[3+5(i-1)] .. ARGV[7+5(i-1)] -> job i: stream entry id, job id, finished record JSON,
--   how long it is kept (ms), '1' when cancelled (counted as `cancelled`) or '0' (`completed`)
-- returns how many were still leased, now settled
local done, cancelled = 0, 0
local n = (#ARGV - 2) / 5
for i = 1, n do
  local a = 3 + 5 * (i - 1)
  local entry = ARGV[a]
  if redis.call('XACK', KEYS[1], ARGV[1], entry) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[a + 1])
    redis.call('SET', KEYS[2 + 2 * i], ARGV[a + 2], 'PX', ARGV[a + 3])
    redis.call('DEL', KEYS[3 + 2 * i])
    if ARGV[a + 4] == '1' then
      cancelled = cancelled + 1
    else
      done = done + 1
    end
    if ARGV[2] == '1' then
      redis.call('XDEL', KEYS[1], entry)
    end
  end
end
if done > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', done)
end
if cancelled > 0 then
  redis.call('HINCRBY', KEYS[2], 'cancelled', cancelled)
end
return done + cancelled
