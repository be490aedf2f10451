
-- Finishes leases, all of one partition: lease i (from 0) has the 8 keys from
-- KEYS[8i + 1] and the 22 arguments from ARGV[22i + 1]:
-- KEYS: record, webhook stream, lane stream (the lease's tenant's), lane
--       scheduled set, lane dead letters, handover lane stream (the tenant's),
--       handover lane scheduled set, handover lane's tenant set.
-- ARGV: 1 group, 2 entry, 3 to ('' = no change), 4 allowed, 5 event,
--       6 callback task, 7 callback job id, 8 retry member ('' = none),
--       9 retry score, 10 dead-letter reason ('' = none), 11 job id, 12 attempt,
--       13 task, 14 part count ('' = single), 15 handover member ('' = none),
--       16 handover score ('' = at once), 17 handover job id, 18 attempt,
--       19 task, 20 note event ('' = none), 21 the lease's tenant, 22 '1' when
--       the handover is the message's receipt check (its member is kept in the
--       record's `rc`, so the final receipt removes it: see transition_main.lua).
-- Only the lease's current holder finishes it: if another worker already acked
-- the entry (a reclaimed duplicate), nothing is scheduled, buried or handed over
-- a second time. A status change applies whoever asks (the table decides).
-- Returns {code, current} for each lease, flattened.
local out = {}
for i = 0, #KEYS / 8 - 1 do
  local k = 8 * i
  local a = 22 * i
  local acked = redis.call('XACK', KEYS[k + 3], ARGV[a + 1], ARGV[a + 2])
  redis.call('XDEL', KEYS[k + 3], ARGV[a + 2])
  local res = {3, ''}
  if ARGV[a + 3] ~= '' then
    res = transition(KEYS[k + 1], KEYS[k + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], '', '')
    if res[1] == 1 and ARGV[a + 14] ~= '' then
      redis.call('HSET', KEYS[k + 1], 'pt', ARGV[a + 14])
    end
  end
  if acked == 1 and ARGV[a + 8] ~= '' then
    redis.call('HDEL', KEYS[k + 1], 'x')
    redis.call('ZADD', KEYS[k + 4], tonumber(ARGV[a + 9]), ARGV[a + 8])
  end
  if acked == 1 and ARGV[a + 10] ~= '' then
    redis.call('XADD', KEYS[k + 5], '*', 'j', ARGV[a + 11], 'n', ARGV[a + 12], 'p', ARGV[a + 13], 'reason', ARGV[a + 10])
  end
  if acked == 1 and ARGV[a + 15] ~= '' then
    if ARGV[a + 16] == '' then
      redis.call('XADD', KEYS[k + 6], '*', 'j', ARGV[a + 17], 'n', ARGV[a + 18], 'p', ARGV[a + 19])
      redis.call('SADD', KEYS[k + 8], ARGV[a + 21])
    else
      redis.call('ZADD', KEYS[k + 7], tonumber(ARGV[a + 16]), ARGV[a + 15])
      if ARGV[a + 22] == '1' then redis.call('HSET', KEYS[k + 1], 'rc', ARGV[a + 15]) end
    end
  end
  if acked == 1 and ARGV[a + 20] ~= '' then
    local ev = redis.call('HGET', KEYS[k + 1], 'e')
    if ev then redis.call('HSET', KEYS[k + 1], 'e', ev .. '\n' .. ARGV[a + 20]) end
  end
  out[#out + 1] = res[1]
  out[#out + 1] = res[2]
end
return out
