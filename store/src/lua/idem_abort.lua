-- Drops a pending idempotency reservation, never a completed response.
-- KEYS: the idempotency key.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'P|' then redis.call('DEL', KEYS[1]) end
return 1
