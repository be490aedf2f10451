
-- Decides a held message. KEYS: record, webhook stream, lane scheduled set, held
-- set (all of the message's partition).
-- ARGV: to, allowed, event, callback task, callback job id, id, due score,
--       scheduled member.
local cur = redis.call('HGET', KEYS[1], 's')
if cur and cur ~= 'held' then return {2, cur} end
local res = transition(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], '', '')
if res[1] == 0 or res[1] == 1 then redis.call('ZREM', KEYS[4], ARGV[6]) end
if res[1] == 1 and ARGV[1] == 'scheduled' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[7]), ARGV[8])
end
return {res[1], res[2]}
