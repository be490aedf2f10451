-- Moves due jobs of one partition from its scheduled set to its stream;
-- `scheduled` messages become `queued`. The caller read the due members first;
-- a member another gateway moved meanwhile is skipped (ZREM answers 0).
-- KEYS: scheduled set, stream, then (channel lanes) the record of each member.
-- ARGV: queued event ('' for lanes without records), then the members
--       (`attempt|job id|task`).
local n = 0
for i = 2, #ARGV do
  local m = ARGV[i]
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local p1 = string.find(m, '|', 1, true)
    local p2 = string.find(m, '|', p1 + 1, true)
    local attempt = string.sub(m, 1, p1 - 1)
    local job = string.sub(m, p1 + 1, p2 - 1)
    local task = string.sub(m, p2 + 1)
    if ARGV[1] ~= '' then
      local rec = KEYS[i + 1]
      if redis.call('HGET', rec, 's') == 'scheduled' then
        local ev = redis.call('HGET', rec, 'e') or ''
        redis.call('HSET', rec, 's', 'queued', 'e', ev .. '\n' .. ARGV[1])
      end
    end
    redis.call('XADD', KEYS[2], '*', 'j', job, 'n', attempt, 'p', task)
    n = n + 1
  end
end
return n
