-- Reserves one message's places under its anti-fraud counter limits
-- (frequency caps, duplicates), all or nothing: the checks and the increments
-- in one step, so that instances screening the same recipient at once cannot
-- both take the last place. The keys share the recipient's hash tag.
-- KEYS: the counters (hashes of bucket id -> count), one per cap.
-- ARGV: 8 per cap, in KEYS order: limit, by, the bucket to increment, the
--       key's TTL (s), the first and last bucket summed against the limit,
--       the stale buckets to delete (first included, last excluded).
-- Returns 0 and applies every increment when each sum + by <= limit, else the
-- 1-based index of the first full cap, changing nothing.
for i = 1, #KEYS do
  local a = (i - 1) * 8
  local first, last = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local used = 0
  if last >= first then
    local fields = {}
    for b = first, last do fields[#fields + 1] = b end
    for _, v in ipairs(redis.call('HMGET', KEYS[i], unpack(fields))) do
      if v then used = used + tonumber(v) end
    end
  end
  if used + tonumber(ARGV[a + 2]) > tonumber(ARGV[a + 1]) then
    return i
  end
end
for i = 1, #KEYS do
  local a = (i - 1) * 8
  local field = ARGV[a + 3]
  redis.call('HINCRBY', KEYS[i], field, tonumber(ARGV[a + 2]))
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[a + 4]))
  local s0, s1 = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
  if s1 > s0 then
    local stale = {}
    for b = s0, s1 - 1 do
      if b ~= tonumber(field) then stale[#stale + 1] = b end
    end
    if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  end
end
return 0
