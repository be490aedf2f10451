-- Records the outcome of a partition's open batch, if it is still batch ARGV[1].
-- KEYS: due set, states, batch, report counters.
-- ARGV: seq, items (JSON array of {m = member, r = row, s = state JSON,
--       n = next member or '', t = its due ms, c = [counter fields]}).
-- Returns 1, or 0 (nothing written) when the batch is gone or another.
local b = redis.call('GET', KEYS[3])
if not b then return 0 end
if tostring(cjson.decode(b).seq) ~= ARGV[1] then return 0 end
for _, it in ipairs(cjson.decode(ARGV[2])) do
  redis.call('ZREM', KEYS[1], it.m)
  redis.call('HSET', KEYS[2], it.r, it.s)
  if it.n ~= '' then redis.call('ZADD', KEYS[1], tonumber(it.t), it.n) end
  for _, f in ipairs(it.c) do redis.call('HINCRBY', KEYS[4], f, 1) end
end
redis.call('DEL', KEYS[3])
return 1
