-- lib/envelope_id: prepended to the scripts that need a job's id from its envelope.
-- envelope_id(env) -> the envelope's own `id` (a non-empty string), or nil when it carries none
-- or is not a JSON object. Quern writes `id` first, so a plain match finds it without decoding
-- the payload; an envelope that does not contain `"id"` at all has none; anything else is
-- decoded (inside pcall: a broken envelope is the worker's to dead-letter, not an error here).
local function envelope_id(env)
  local id = string.match(env, '^{"id":"([^"\\]+)"')
  if id then
    return id
  end
  if not string.find(env, '"id"', 1, true) then
    return nil
  end
  local ok, decoded = pcall(cjson.decode, env)
  if ok and type(decoded) == 'table' and type(decoded.id) == 'string' and decoded.id ~= '' then
    return decoded.id
  end
  return nil
end

