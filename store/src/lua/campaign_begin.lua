-- Hands out a partition's open batch of due recipients, or opens a new one.
-- KEYS: batch (string: JSON {seq, due}), batch counter, due set, recipients,
--       states, events.
-- ARGV: now ms, most recipients.
-- Returns {seq, member, recipient, state, events, member, ...} or {} when
-- nothing is due. Members stay in the due set until the batch is committed.
local b = redis.call('GET', KEYS[1])
if not b then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
  if #due == 0 then return {} end
  local seq = redis.call('INCR', KEYS[2])
  b = cjson.encode({seq = seq, due = due})
  redis.call('SET', KEYS[1], b)
end
local d = cjson.decode(b)
local out = {tostring(d.seq)}
for _, m in ipairs(d.due) do
  local row = string.match(m, '^(%d+):')
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[4], row) or ''
  out[#out + 1] = redis.call('HGET', KEYS[5], row) or ''
  out[#out + 1] = redis.call('HGET', KEYS[6], row) or ''
end
return out
