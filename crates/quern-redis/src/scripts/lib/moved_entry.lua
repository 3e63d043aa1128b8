-- lib/moved_entry: prepended to the scripts that move a stream entry to a new one (needs
-- lib/envelope_id).
-- moved_fields(fields, queue, entry_id, expiries_add) -> the fields of the new entry, and the
-- job's id (nil for an entry without `e`, which is not Quern's and is copied unchanged): every
-- field but `i`, `r` raised by `expiries_add` (written when non-zero), and `i` = the job's id —
-- the entry's own `i` if any (an earlier move wrote it), else the envelope's explicit id, else
-- `<queue>/<entry id>`, the id the job had while it was stored here.
local function moved_fields(fields, queue, entry_id, expiries_add)
  local out, env, id, r = {}, nil, nil, 0
  for i = 1, #fields, 2 do
    local k, v = fields[i], fields[i + 1]
    if k == 'i' then
      if v ~= '' then id = v end
    elseif k == 'r' then
      r = tonumber(v) or 0
    else
      if k == 'e' then env = v end
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  r = r + expiries_add
  if r > 0 then
    out[#out + 1] = 'r'
    out[#out + 1] = tostring(r)
  end
  if env == nil then
    if id then
      out[#out + 1] = 'i'
      out[#out + 1] = id
    end
    return out, nil
  end
  id = id or envelope_id(env) or (queue .. '/' .. entry_id)
  out[#out + 1] = 'i'
  out[#out + 1] = id
  return out, id
end

