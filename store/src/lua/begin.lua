-- Loads records for delivery and marks the queued ones in flight (field `x`).
-- KEYS: record keys, all of one partition. Returns d, s, e of each ('' when absent).
local out = {}
for _, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'd', 's', 'e')
  if v[2] == 'queued' then redis.call('HSET', k, 'x', '1') end
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
  out[#out + 1] = v[3] or ''
end
return out
