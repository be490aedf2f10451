-- Gives back a place reserved by cap_reserve.lua whose message was not stored.
-- KEYS: 1 the counter. ARGV: 1 the bucket, 2 by.
-- A bucket that is gone (the key expired) is left alone, so a release never
-- leaves a key without its TTL; a bucket that reaches 0 is deleted.
-- Returns the bucket's count after the release (0 when gone).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
return n
