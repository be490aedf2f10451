-- Sends one dead letter back to its lane, in the dead letter's partition.
-- KEYS: 1 the lane's dead-letter stream, 2 the lane's scheduled set.
-- ARGV: 1 the dead entry's id, 2 due ms, 3 the scheduled member (the job).
-- Only the call that removes the entry schedules it: a second requeue of the
-- same id does nothing. Returns 1 when requeued, 0 when the entry was gone.
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
