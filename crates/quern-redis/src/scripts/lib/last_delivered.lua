-- lib/last_delivered: prepended to the scripts that ask where a consumer group has read to.
-- last_delivered(stream, group) -> the group's last-delivered entry id, or nil when the stream
-- has no such group (no worker ever read the queue).
local function last_delivered(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == group then
      return f['last-delivered-id']
    end
  end
  return nil
end

