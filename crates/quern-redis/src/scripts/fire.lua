-- fire: enqueues the run of a periodic schedule for due time T once, however many workers try
-- (every worker ticks; the compare-and-set on `last_due` decides, and the run's id is `cron:<name>:<T>`).
-- KEYS[1] -> the schedule's state hash (`periodic:<name>`)
-- KEYS[2] -> stream
-- KEYS[3] -> jobs index hash
-- KEYS[4] -> dead records hash
-- KEYS[5] -> the run's finished record (`done:<id>`)
-- ARGV[1] -> due time T, ms since the epoch
-- ARGV[2] -> the run's job id
-- ARGV[3] -> envelope JSON (it carries the id)
-- ARGV[4] -> '1' to skip T while the previous run is still queued, running or waiting for a retry
-- ARGV[5] -> now, ms since the epoch (kept as `last_fired_at`)
-- returns {1, entry id} when enqueued, else {0, why}: 'passed' (T is not after the last due time
--   decided: fired, skipped, or before the schedule became known), 'overlap' (T skipped: the
--   previous run is still in the queue), 'exists' (a job with this id exists: T counts as fired)
local last = tonumber(redis.call('HGET', KEYS[1], 'last_due') or '-1')
if tonumber(ARGV[1]) <= last then
  return {0, 'passed'}
end
if ARGV[4] == '1' then
  local prev = redis.call('HGET', KEYS[1], 'last_id')
  if prev and redis.call('HEXISTS', KEYS[3], prev) == 1 then
    redis.call('HSET', KEYS[1], 'last_due', ARGV[1], 'last_skipped', ARGV[1])
    return {0, 'overlap'}
  end
end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 or redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1
    or redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[1], 'last_due', ARGV[1], 'last_id', ARGV[2])
  return {0, 'exists'}
end
local entry = redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], 'e:' .. entry)
redis.call('HSET', KEYS[1], 'last_due', ARGV[1], 'last_id', ARGV[2], 'last_fired_at', ARGV[5])
return {1, entry}
