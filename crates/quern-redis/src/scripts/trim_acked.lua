-- trim_acked: removes, from the head of the stream, the entries that every consumer group has
-- acknowledged, and counts the entries still waiting for Quern's group.
--
-- Settling acknowledges a job (XACK) without deleting its entry; this script deletes them in
-- blocks: everything below the lowest id some group still needs. A group needs its oldest
-- pending entry (leased, not yet acknowledged) and everything after its last-delivered id. An
-- entry at or above that floor is never touched, so no leased or waiting job can be trimmed.
--
-- KEYS[1] -> stream
-- ARGV[1] -> Quern's consumer group
-- ARGV[2] -> '1' to count waiting entries, '0' to skip it (the settler does not need it)
-- ARGV[3] -> '1' to count them without the server's `lag` field (as on Redis 6.2 it must)
-- returns {trimmed, oldest pending id of any group or '', Quern's last-delivered id or '',
--          waiting (-1 when it cannot be counted cheaply), running (Quern's pending count)}

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, '', '', 0, 0}
end

-- Stream ids are '<ms>-<seq>' with decimal parts that may exceed a Lua number's exact range:
-- compare them as digit strings.
local function num_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return num_less(am, bm) end
  return num_less(as, bs)
end
-- The id right after `id`, or `id` itself when its sequence is too large to add one exactly
-- (then one acknowledged entry stays until the next trim: harmless).
local function next_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if #seq > 15 then return id end
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

local floor, oldest = nil, ''
local ours_last, ours_lag, running = nil, nil, 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need
  if f['pending'] > 0 then
    need = redis.call('XPENDING', KEYS[1], f['name'])[2]
    if oldest == '' or id_less(need, oldest) then oldest = need end
  else
    need = next_id(f['last-delivered-id'])
  end
  if floor == nil or id_less(need, floor) then floor = need end
  if f['name'] == ARGV[1] then
    ours_last = f['last-delivered-id']
    ours_lag = f['lag']
    running = f['pending']
  end
end

local trimmed = 0
if floor ~= nil then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', floor)
end

local len = redis.call('XLEN', KEYS[1])
local waiting
if ARGV[2] ~= '1' then
  waiting = -1
elseif ours_last == nil then
  -- No group yet: nothing was ever delivered.
  waiting = len
elseif ARGV[3] ~= '1' and type(ours_lag) == 'number' then
  waiting = ours_lag
else
  -- Waiting = entries after the last-delivered id = all entries minus those at or before it
  -- (the leased ones, and acknowledged ones held back by an older leased one).
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first == 0 then
    waiting = 0
  elseif id_less(ours_last, first[1][1]) then
    waiting = len
  else
    local held = redis.call('XRANGE', KEYS[1], first[1][1], ours_last, 'COUNT', 10001)
    if #held > 10000 then
      waiting = -1
    else
      waiting = len - #held
    end
  end
end

return {trimmed, oldest, ours_last or '', waiting, running}
