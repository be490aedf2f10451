-- Applies a status change if the transition table allows it, and queues the
-- customer callback when the message has one. Field `x` marks a message a worker
-- is submitting: it cannot be cancelled then.
-- Returns {code, current}: 0 missing, 1 applied (current = previous), 2 refused,
-- 4 in flight, 5 one part of a multipart message delivered.
-- A campaign's message (`cc` = its report counters, `cf` = `s<step>:<channel>`,
-- `ca` = accepted ms) counts each status it reaches: in all, per UTC day
-- (days since the epoch), and for delivered/read/clicked the time it took
-- (histogram buckets floor(4 log2(seconds + 1))).
local function count_campaign(rec, cc, to)
  if not cc then return end
  local cf = (redis.call('HGET', rec, 'cf') or '') .. ':' .. to
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HINCRBY', cc, cf, 1)
  redis.call('HINCRBY', cc, cf .. ':d' .. math.floor(ms / 86400000), 1)
  local ca = tonumber(redis.call('HGET', rec, 'ca') or '')
  if ca and (to == 'delivered' or to == 'read' or to == 'clicked') then
    local secs = math.max(0, ms - ca) / 1000
    redis.call('HINCRBY', cc, cf .. ':t' .. math.floor(4 * math.log(secs + 1) / math.log(2)), 1)
  end
end

local function transition(rec, hook, to, allowed, event, cbpayload, cbjob, part, partevent)
  -- Status, history, callbacks wanted, campaign counters, part count, pending
  -- receipt check and callback context in one read.
  local f = redis.call('HMGET', rec, 's', 'e', 'cb', 'cc', 'pt', 'rc', 'h')
  local cur = f[1]
  if not cur then return {0, ''} end
  if not string.find(allowed, ',' .. cur .. ',', 1, true) then return {2, cur} end
  if to == 'cancelled' and redis.call('HEXISTS', rec, 'x') == 1 then return {4, cur} end
  -- submitted → queued is the SMS fallback of an RCS message: once per message,
  -- whoever asks (a stale copy of the check must not send a second SMS).
  if to == 'queued' and cur == 'submitted' and redis.call('HSETNX', rec, 'fb', '1') == 0 then
    return {2, cur}
  end
  local ev = f[2] or ''
  -- A multipart message is delivered when every part is; each part counts once
  -- (an SMSC may send the same receipt again).
  if part ~= '' and to == 'delivered' then
    local total = tonumber(f[5] or '1') or 1
    if total > 1 then
      if redis.call('HSETNX', rec, 'p:' .. part, '1') == 0 then return {2, cur} end
      if redis.call('HINCRBY', rec, 'pd', 1) < total then
        redis.call('HSET', rec, 'e', ev .. '\n' .. partevent)
        return {5, cur}
      end
    end
  end
  redis.call('HSET', rec, 's', to, 'e', ev .. '\n' .. event)
  count_campaign(rec, f[4], to)
  -- `cb`: 1 every change, 0 none, or the statuses wanted (",delivered,failed,").
  local cb = f[3] or '0'
  if cb == '1' or (cb ~= '0' and string.find(cb, ',' .. to .. ',', 1, true)) then
    -- The callback task is a JSON object: the record's context (`h`, see
    -- CallbackContext) goes in as its field "h", so the webhook lane posts it
    -- without loading the message.
    if f[7] and string.sub(f[7], 1, 1) == '{' and string.sub(cbpayload, -1) == '}' then
      cbpayload = string.sub(cbpayload, 1, -2) .. ',"h":' .. f[7] .. '}'
    end
    redis.call('XADD', hook, '*', 'j', cbjob, 'n', '0', 'p', cbpayload)
  end
  -- The third value: the pending receipt check's member (false: none).
  return {1, cur, f[6]}
end
