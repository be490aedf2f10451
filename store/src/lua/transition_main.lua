
-- Applies status changes, all of one partition: change i (from 0) has the 3
-- keys from KEYS[3i + 1] and the 7 arguments from ARGV[7i + 1].
-- KEYS: record, the partition's webhook stream, its SMS lane's scheduled set.
-- A change to a final status also removes the message's pending receipt check
-- (`rc`, see finish.lua): with its receipt in, the check has nothing to do, and
-- it would otherwise cost a promotion, a claim, a load and a finish later.
-- ARGV: to, allowed (",a,b,"), event, callback task, callback job id, part, part event.
-- Returns {code, current} for each change, flattened.
local out = {}
local final = ',delivered,undeliverable,expired,failed,read,rejected,cancelled,'
for i = 0, #KEYS / 3 - 1 do
  local k = 3 * i
  local a = 7 * i
  local res = transition(KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7])
  if res[1] == 1 and string.find(final, ',' .. ARGV[a + 1] .. ',', 1, true) then
    local rc = res[3]
    if rc then
      redis.call('ZREM', KEYS[k + 3], rc)
      redis.call('HDEL', KEYS[k + 1], 'rc')
    end
  end
  out[#out + 1] = res[1]
  out[#out + 1] = res[2]
end
return out
