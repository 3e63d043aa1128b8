-- find_entry: one stream entry and its lease, for finding a job by id (admin; O(log n), no scan).
-- KEYS[1] -> stream
-- ARGV[1] -> consumer group
-- ARGV[2] -> stream entry id
-- returns {} when there is no such entry, else {fields, last-delivered id of the group ('' when
--   the group does not exist), lease}: lease = {} when the entry is not leased, else
--   {consumer, idle ms, deliveries}. An entry neither leased nor after the last-delivered id is
--   a completed job not yet trimmed.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #entry == 0 then
  return {}
end
local last = last_delivered(KEYS[1], ARGV[1]) or ''
local lease = {}
if last ~= '' then
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  if p[1] then
    lease = {p[1][2], p[1][3], p[1][4]}
  end
end
return {entry[1][2], last, lease}
