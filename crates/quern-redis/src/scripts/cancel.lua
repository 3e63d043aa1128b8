-- cancel: a job that has not finished is cancelled. Queued, delayed or waiting for a retry, it
-- is removed at once (it never runs) and its finished record written; running, its worker is
-- asked to stop it (`cancel:<job id>`, which the worker polls), and it settles as cancelled.
-- KEYS[1] -> stream
-- KEYS[2] -> scheduled sorted set
-- KEYS[3] -> retry sorted set
-- KEYS[4] -> jobs index hash
-- KEYS[5] -> stats hash
-- KEYS[6] -> the job's finished record (`done:<id>`)
-- KEYS[7] -> the job's cancel request (`cancel:<job id>`)
-- ARGV[1] -> consumer group
-- ARGV[2] -> job id
-- ARGV[3] -> stream entry id where the job is, or '' when it is delayed or retrying
-- ARGV[4] -> with ARGV[3] = '': 's' (delayed) or 'r' (retrying)
-- ARGV[5] -> finished record JSON (state `cancelled`)
-- ARGV[6] -> how long the record is kept, ms
-- ARGV[7] -> with ARGV[3] = '': its envelope, the sorted set's member
-- returns 'removed' (it will never run), 'requested' (running: its worker stops it),
--   'finished' (it completed meanwhile) or 'moved' (it is no longer where it was looked for)
local function removed()
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[6])
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  return 'removed'
end
if ARGV[3] == '' then
  local set = KEYS[2]
  if ARGV[4] == 'r' then set = KEYS[3] end
  if redis.call('ZREM', set, ARGV[7]) == 1 then
    return removed()
  end
  return 'moved'
end
local entry = ARGV[3]
if #redis.call('XRANGE', KEYS[1], entry, entry) == 0 then
  return 'moved'
end
-- No consumer group yet (no worker ever read the queue): nothing was delivered.
local last = last_delivered(KEYS[1], ARGV[1])
if last then
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
  if p[1] then
    redis.call('SET', KEYS[7], ARGV[2], 'PX', 86400000)
    return 'requested'
  end
end
local function after(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if not ams or not bms then return true end
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end
if last and not after(entry, last) then
  return 'finished'
end
redis.call('XDEL', KEYS[1], entry)
return removed()
