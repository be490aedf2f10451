-- Records clicks on tracked links, all of one partition: click i (from 0) has
-- the 2 keys from KEYS[2i + 1] and the 4 arguments from ARGV[4i + 1].
-- KEYS: the message's record, its partition's webhook stream.
-- ARGV: kind (`clicked` for a person, `prefetch`), at (ms), callback task ('' =
--       none), callback job id.
-- Record fields: `kc` clicks, `kp` prefetches, `kf`/`kl` first/last click ms;
-- the click is added to the history with the message's current status. The
-- callback is queued when the message has a callback URL (`cb` other than 0).
-- Returns {found, clicks, prefetches, first, last} for each click, flattened.
local out = {}
for i = 0, #KEYS / 2 - 1 do
  local rec, hook = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 4 * i
  local kind, at = ARGV[a + 1], ARGV[a + 2]
  local cur = redis.call('HGET', rec, 's')
  if not cur then
    for _, v in ipairs({0, 0, 0, 0, 0}) do out[#out + 1] = v end
  else
    if kind == 'clicked' then
      if redis.call('HINCRBY', rec, 'kc', 1) == 1 then
        count_campaign(rec, redis.call('HGET', rec, 'cc'), 'clicked')
      end
      redis.call('HSETNX', rec, 'kf', at)
      redis.call('HSET', rec, 'kl', at)
    else
      redis.call('HINCRBY', rec, 'kp', 1)
    end
    local ev = redis.call('HGET', rec, 'e') or ''
    local line = cjson.encode({status = cur, at = tonumber(at), reason = kind})
    redis.call('HSET', rec, 'e', ev .. '\n' .. line)
    local cb = redis.call('HGET', rec, 'cb') or '0'
    if ARGV[a + 3] ~= '' and cb ~= '0' then
      redis.call('XADD', hook, '*', 'j', ARGV[a + 4], 'n', '0', 'p', ARGV[a + 3])
    end
    local f = redis.call('HMGET', rec, 'kc', 'kp', 'kf', 'kl')
    out[#out + 1] = 1
    for j = 1, 4 do out[#out + 1] = tonumber(f[j] or '0') or 0 end
  end
end
return out
