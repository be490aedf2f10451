-- Adds audience rows of one partition: row i (from 0) has ARGV[3i+1..3i+3]:
-- row number, recipient (JSON), due ms of its first step.
-- KEYS: recipients (hash row → JSON), due set (member `row:step`), states.
-- A row that has a state (it got a step already) or is due already is left
-- as it is, so adding the same file twice adds nothing.
for i = 0, #ARGV / 3 - 1 do
  local row = ARGV[3 * i + 1]
  if redis.call('HEXISTS', KEYS[3], row) == 0 then
    redis.call('HSET', KEYS[1], row, ARGV[3 * i + 2])
    redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[3 * i + 3]), row .. ':0')
  end
end
return 1
