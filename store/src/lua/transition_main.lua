
-- Applies status changes, all of one partition: change i (from 0) has the 2
-- keys from KEYS[2i + 1] and the 7 arguments from ARGV[7i + 1].
-- KEYS: record, the partition's webhook stream.
-- ARGV: to, allowed (",a,b,"), event, callback task, callback job id, part, part event.
-- Returns {code, current} for each change, flattened.
local out = {}
for i = 0, #KEYS / 2 - 1 do
  local k = 2 * i
  local a = 7 * i
  local res = transition(KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7])
  out[#out + 1] = res[1]
  out[#out + 1] = res[2]
end
return out
