-- Moves due jobs of one partition from its scheduled set to their streams (a
-- channel lane has one per tenant); `scheduled` messages become `queued`. The
-- caller read the due members first; a member another gateway moved meanwhile
-- is skipped (ZREM answers 0).
-- KEYS: scheduled set, the lane's tenant set, then for member i (from 1) its
--       stream KEYS[2i + 1] and its record KEYS[2i + 2] (the stream again on
--       the webhook lane, which has no records).
-- ARGV: queued event ('' on the webhook lane), then the members
--       (`attempt|job id|tenant|task`).
local n = 0
for i = 2, #ARGV do
  local m = ARGV[i]
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local p1 = string.find(m, '|', 1, true)
    local p2 = string.find(m, '|', p1 + 1, true)
    local p3 = string.find(m, '|', p2 + 1, true)
    local attempt = string.sub(m, 1, p1 - 1)
    local job = string.sub(m, p1 + 1, p2 - 1)
    local tenant = string.sub(m, p2 + 1, p3 - 1)
    local task = string.sub(m, p3 + 1)
    local stream = KEYS[2 * (i - 1) + 1]
    if ARGV[1] ~= '' then
      local rec = KEYS[2 * (i - 1) + 2]
      if redis.call('HGET', rec, 's') == 'scheduled' then
        local ev = redis.call('HGET', rec, 'e') or ''
        redis.call('HSET', rec, 's', 'queued', 'e', ev .. '\n' .. ARGV[1])
      end
      redis.call('SADD', KEYS[2], tenant)
    end
    redis.call('XADD', stream, '*', 'j', job, 'n', attempt, 'p', task)
    n = n + 1
  end
end
return n
