-- Set or clear one recipient's opt-out, unless a newer change already happened.
-- KEYS[1]: the opt-out key (exists while opted out; its value is when)
-- KEYS[2]: when the opt-out state last changed (either way), ms
-- ARGV[1]: "1" to opt out, "0" to opt in; ARGV[2]: when this change happened, ms
-- Returns 1 when applied, 0 when an older event lost to a newer change (a
-- replayed UNSUBSCRIBE from 2020 never undoes last week's opt-in).
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
local at = tonumber(ARGV[2])
if at < last then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
