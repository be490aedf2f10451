-- Stores the next version of a template.
-- KEYS: the template (hash: `n` newest version, `v<n>` each version's document),
--       the tenant's template ids (set); one hash tag.
-- ARGV: id, document. Returns the new version.
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'v' .. n, ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return n
