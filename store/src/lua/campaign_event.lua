-- Records an event for a campaign recipient once, and counts it.
-- KEYS: events (hash row → "paid,replied"), states, report counters.
-- ARGV: row, event, at ms. Returns 1 when new, 0 when known.
local v = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if string.find(',' .. v .. ',', ',' .. ARGV[2] .. ',', 1, true) then return 0 end
if v == '' then v = ARGV[2] else v = v .. ',' .. ARGV[2] end
redis.call('HSET', KEYS[1], ARGV[1], v)
local at = tonumber(ARGV[3])
local f = 'ev:' .. ARGV[2]
redis.call('HINCRBY', KEYS[3], f, 1)
redis.call('HINCRBY', KEYS[3], f .. ':d' .. math.floor(at / 86400000), 1)
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st then
  local first = cjson.decode(st).f
  if type(first) == 'number' then
    local secs = math.max(0, at - first) / 1000
    redis.call('HINCRBY', KEYS[3], f .. ':t' .. math.floor(4 * math.log(secs + 1) / math.log(2)), 1)
  end
end
return 1
