
-- Finishes a lease. Every key is of the message's partition.
-- KEYS: record, webhook stream, lane stream, lane scheduled set, lane dead
--       letters, handover lane stream, handover lane scheduled set.
-- ARGV: 1 group, 2 entry, 3 to ('' = no change), 4 allowed, 5 event,
--       6 callback task, 7 callback job id, 8 retry member ('' = none),
--       9 retry score, 10 dead-letter reason ('' = none), 11 job id, 12 attempt,
--       13 task, 14 part count ('' = single), 15 handover member ('' = none),
--       16 handover score ('' = at once), 17 handover job id, 18 attempt,
--       19 task, 20 note event ('' = none).
-- Only the lease's current holder finishes it: if another worker already acked
-- the entry (a reclaimed duplicate), nothing is scheduled, buried or handed over
-- a second time. A status change applies whoever asks (the table decides).
local acked = redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
local res = {3, ''}
if ARGV[3] ~= '' then
  res = transition(KEYS[1], KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], '', '')
  if res[1] == 1 and ARGV[14] ~= '' then
    redis.call('HSET', KEYS[1], 'pt', ARGV[14])
  end
end
if acked == 1 and ARGV[8] ~= '' then
  redis.call('HDEL', KEYS[1], 'x')
  redis.call('ZADD', KEYS[4], tonumber(ARGV[9]), ARGV[8])
end
if acked == 1 and ARGV[10] ~= '' then
  redis.call('XADD', KEYS[5], '*', 'j', ARGV[11], 'n', ARGV[12], 'p', ARGV[13], 'reason', ARGV[10])
end
if acked == 1 and ARGV[15] ~= '' then
  if ARGV[16] == '' then
    redis.call('XADD', KEYS[6], '*', 'j', ARGV[17], 'n', ARGV[18], 'p', ARGV[19])
  else
    redis.call('ZADD', KEYS[7], tonumber(ARGV[16]), ARGV[15])
  end
end
if acked == 1 and ARGV[20] ~= '' then
  local ev = redis.call('HGET', KEYS[1], 'e')
  if ev then redis.call('HSET', KEYS[1], 'e', ev .. '\n' .. ARGV[20]) end
end
return res
