//! The production store on Redis.
//!
//! Keys (all under the configured prefix `P`):
//! * `P:m:{id}` hash: `d` message data (JSON), `s` status, `e` events (JSON lines),
//!   `cb` 1 when status changes are posted back, `x` while a worker submits it;
//!   expires after retention.
//! * `P:h:{tenant}:to:{to}` / `P:h:{tenant}:ref:{ref}` sorted sets of message ids
//!   (score 0, so ULIDs sort by time lexicographically) for contact history.
//! * `P:q:{lane}` stream with consumer group `workers`; entries carry `j` job id,
//!   `n` attempt, `p` payload and are deleted when acknowledged, so `XLEN` is the depth.
//! * `P:s:{lane}` sorted set of jobs waiting for a time (send_at, retry backoff).
//! * `P:dlq:{lane}` stream of dead-lettered jobs.
//! * `P:c:{connector}:{provider id}` → message id, for receipts.
//! * `P:i:{tenant}:{sha256(key)}` idempotency record.
//! * `P:held` sorted set of held message ids (score: accepted ms).
//! * `P:sup:{tenant}` hash: suppressed e-mail address → reason (hard bounces).
//! * `P:once:{key}` marks an inbound event already handled (RCS user messages),
//!   expiring after the replay window.
//! * `P:af:{key}` anti-fraud counters (hash of time buckets, see
//!   [`goniec_antifraud::counters`]) and opt-outs (plain keys, no expiry).
//!
//! Every write that touches several keys is atomic: `MULTI`/`EXEC` for acceptance,
//! a Lua script for anything that reads before it writes (transitions, finishing a
//! lease, promoting due jobs). Scripts go through `EVALSHA` with an `EVAL` fallback,
//! so a restarted Redis with an empty script cache is handled.
//!
//! Not cluster-ready yet: a script touches keys of several slots.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamClaimReply, StreamId, StreamInfoConsumersReply,
    StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{RedisError, Script, Value};
use sha2::{Digest, Sha256};

use super::{
    encode_member, parse_idem, CallbackPayload, Change, Handover, HistoryKey, IdemBegin, IdemWrite,
    Job, Lane, LaneStats, Lease, NewMessage, Store, StoreError, Transition,
};
use crate::model::{Event, MessageData, Record, Status};
use goniec_antifraud::{Counters, Increment, Needs};
use goniec_config::Channel;

const GROUP: &str = "workers";

/// Applies a transition if allowed and queues a callback. Field `x` marks a message a
/// worker is submitting: it cannot be cancelled then.
/// Returns {code, current}: 0 missing, 1 applied (current = previous), 2 refused,
/// 4 in flight.
const TRANSITION_LUA: &str = r#"
local function transition(rec, hook, to, allowed, event, cbpayload, cbjob, part, partevent)
  local cur = redis.call('HGET', rec, 's')
  if not cur then return {0, ''} end
  if not string.find(allowed, ',' .. cur .. ',', 1, true) then return {2, cur} end
  if to == 'cancelled' and redis.call('HEXISTS', rec, 'x') == 1 then return {4, cur} end
  -- submitted → queued is the SMS fallback of an RCS message: once per message,
  -- whoever asks (a stale copy of the check must not send a second SMS).
  if to == 'queued' and cur == 'submitted' and redis.call('HSETNX', rec, 'fb', '1') == 0 then
    return {2, cur}
  end
  local ev = redis.call('HGET', rec, 'e') or ''
  -- A multipart message is delivered when every part is; each part counts once
  -- (an SMSC may send the same receipt again).
  if part ~= '' and to == 'delivered' then
    local total = tonumber(redis.call('HGET', rec, 'pt') or '1') or 1
    if total > 1 then
      if redis.call('HSETNX', rec, 'p:' .. part, '1') == 0 then return {2, cur} end
      if redis.call('HINCRBY', rec, 'pd', 1) < total then
        redis.call('HSET', rec, 'e', ev .. '\n' .. partevent)
        return {5, cur}
      end
    end
  end
  redis.call('HSET', rec, 's', to, 'e', ev .. '\n' .. event)
  if redis.call('HGET', rec, 'cb') == '1' then
    redis.call('XADD', hook, '*', 'j', cbjob, 'n', '0', 'p', cbpayload)
  end
  return {1, cur}
end
"#;

/// KEYS: record, webhook stream. ARGV: to, allowed, event, cbpayload, cbjob, part, part event.
const TRANSITION_MAIN: &str = r#"
return transition(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"#;

/// Finishes a lease. KEYS: record, webhook stream, queue stream, (unused), sched zset, dlq,
/// handover queue stream, handover sched zset, then one correlation key per provider id.
/// ARGV: group, entry, to ('' = none), allowed, event, cbpayload, cbjob,
///       corr value ('' = none), corr ttl s, retry member ('' = none), retry score,
///       dlq reason ('' = none), job id, attempt, payload, part count ('' = single),
///       handover member ('' = none), handover score ('' = at once), handover job id,
///       attempt, payload, note event ('' = none).
const FINISH_MAIN: &str = r#"
-- Only the lease's current holder finishes it: if another worker already acked the
-- entry (a reclaimed duplicate), do not schedule or bury it a second time.
local acked = redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
local res = {3, ''}
if ARGV[3] ~= '' then
  res = transition(KEYS[1], KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], '', '')
  if res[1] == 1 and ARGV[16] ~= '' then
    redis.call('HSET', KEYS[1], 'pt', ARGV[16])
  end
end
if ARGV[8] ~= '' then
  for i = 9, #KEYS do
    redis.call('SET', KEYS[i], ARGV[8], 'EX', tonumber(ARGV[9]))
  end
end
if acked == 1 and ARGV[10] ~= '' then
  redis.call('HDEL', KEYS[1], 'x')
  redis.call('ZADD', KEYS[5], tonumber(ARGV[11]), ARGV[10])
end
if acked == 1 and ARGV[12] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'j', ARGV[13], 'n', ARGV[14], 'p', ARGV[15], 'reason', ARGV[12])
end
if acked == 1 and ARGV[17] ~= '' then
  if ARGV[18] == '' then
    redis.call('XADD', KEYS[7], '*', 'j', ARGV[19], 'n', ARGV[20], 'p', ARGV[21])
  else
    redis.call('ZADD', KEYS[8], tonumber(ARGV[18]), ARGV[17])
  end
end
if acked == 1 and ARGV[22] ~= '' then
  local ev = redis.call('HGET', KEYS[1], 'e')
  if ev then redis.call('HSET', KEYS[1], 'e', ev .. '\n' .. ARGV[22]) end
end
return res
"#;

/// Loads records for delivery and marks the queued ones in flight.
/// KEYS: record keys. Returns d, s, e for each ('' when absent).
const BEGIN: &str = r#"
local out = {}
for _, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'd', 's', 'e')
  if v[2] == 'queued' then redis.call('HSET', k, 'x', '1') end
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
  out[#out + 1] = v[3] or ''
end
return out
"#;

/// Moves due jobs from the scheduled set to the stream; `scheduled` messages become
/// `queued`. KEYS: sched zset, queue stream. ARGV: now, max, record prefix ('' for
/// non-message lanes), queued event JSON.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  local n = string.sub(m, 1, p1 - 1)
  local j = string.sub(m, p1 + 1, p2 - 1)
  local p = string.sub(m, p2 + 1)
  if ARGV[3] ~= '' then
    local rec = ARGV[3] .. j
    if redis.call('HGET', rec, 's') == 'scheduled' then
      local ev = redis.call('HGET', rec, 'e') or ''
      redis.call('HSET', rec, 's', 'queued', 'e', ev .. '\n' .. ARGV[4])
    end
  end
  redis.call('XADD', KEYS[2], '*', 'j', j, 'n', n, 'p', p)
end
return #due
"#;

/// Decides a held message. KEYS: record, webhook stream, sched zset, held zset.
/// ARGV: to, allowed, event, cbpayload, cbjob, id, due score, sched member.
const DECIDE_HELD_MAIN: &str = r#"
local cur = redis.call('HGET', KEYS[1], 's')
if cur and cur ~= 'held' then return {2, cur} end
local res = transition(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], '', '')
if res[1] == 0 or res[1] == 1 then redis.call('ZREM', KEYS[4], ARGV[6]) end
if res[1] == 1 and ARGV[1] == 'scheduled' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[7]), ARGV[8])
end
return res
"#;

/// Drops a pending idempotency reservation, never a completed response. KEYS: the key.
const IDEM_ABORT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'P|' then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// The Redis backend. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    /// Multiplexed connection for everything that does not block.
    conn: ConnectionManager,
    /// One connection per lane for `XREADGROUP … BLOCK`: a blocked read holds its
    /// connection, so sharing one would make every lane wait for the others' blocks.
    blocking: Vec<(Lane, ConnectionManager)>,
    prefix: String,
    retention_s: u64,
    idem_ttl_s: u64,
    corr_ttl_s: u64,
    transition: Script,
    finish: Script,
    promote: Script,
    idem_abort: Script,
    begin: Script,
    /// `lua/opt_out.lua`: an opt-out change applied only if newer than the last.
    opt_out: Script,
    decide_held: Script,
    /// Where the last `XAUTOCLAIM` of each lane stopped, so scans cover the whole
    /// pending list instead of its first page over and over.
    reclaim_cursor: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Lane, String>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connect lazily: the gateway starts even while Redis is down (and is not ready).
    pub fn new(cfg: &goniec_config::Store) -> Result<Self, StoreError> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            base.clone().set_response_timeout(Some(cfg.timeout)),
        )
        .map_err(unavailable)?;
        // Blocking reads wait up to one second, so their timeout must be longer.
        let blocking_cfg = base.set_response_timeout(Some(cfg.timeout + Duration::from_secs(2)));
        let blocking = Lane::ALL
            .into_iter()
            .map(|lane| {
                ConnectionManager::new_lazy_with_config(client.clone(), blocking_cfg.clone())
                    .map(|c| (lane, c))
                    .map_err(unavailable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisStore {
            conn,
            blocking,
            prefix: cfg.prefix.clone(),
            retention_s: cfg.retention.as_secs().max(1),
            idem_ttl_s: cfg.idempotency_ttl.as_secs().max(1),
            corr_ttl_s: cfg.correlation_ttl.as_secs().max(1),
            transition: Script::new(&format!("{TRANSITION_LUA}{TRANSITION_MAIN}")),
            finish: Script::new(&format!("{TRANSITION_LUA}{FINISH_MAIN}")),
            promote: Script::new(PROMOTE),
            idem_abort: Script::new(IDEM_ABORT),
            begin: Script::new(BEGIN),
            decide_held: Script::new(&format!("{TRANSITION_LUA}{DECIDE_HELD_MAIN}")),
            opt_out: Script::new(include_str!("lua/opt_out.lua")),
            reclaim_cursor: Default::default(),
        })
    }

    fn af_key(&self, key: &str) -> String {
        format!("{}:af:{key}", self.prefix)
    }
    fn sup_key(&self, tenant: &str) -> String {
        format!("{}:sup:{tenant}", self.prefix)
    }
    fn held_key(&self) -> String {
        format!("{}:held", self.prefix)
    }
    fn rec_key(&self, id: &str) -> String {
        format!("{}:m:{id}", self.prefix)
    }
    fn alive_key(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.prefix)
    }
    fn queue_key(&self, lane: Lane) -> String {
        format!("{}:q:{lane}", self.prefix)
    }
    fn sched_key(&self, lane: Lane) -> String {
        format!("{}:s:{lane}", self.prefix)
    }
    fn dlq_key(&self, lane: Lane) -> String {
        format!("{}:dlq:{lane}", self.prefix)
    }
    fn corr_key(&self, connector: &str, provider_id: &str) -> String {
        format!("{}:c:{connector}:{provider_id}", self.prefix)
    }
    fn idem_key(&self, tenant: &str, key: &str) -> String {
        // Hash the client's key: it is arbitrary text and must not shape our key space.
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}:i:{tenant}:{digest}", self.prefix)
    }
    fn history_key(&self, tenant: &str, key: &HistoryKey) -> String {
        match key {
            HistoryKey::To(to) => format!("{}:h:{tenant}:to:{to}", self.prefix),
            HistoryKey::ClientRef(r) => format!("{}:h:{tenant}:ref:{r}", self.prefix),
        }
    }

    /// Create every lane's consumer group (idempotent).
    async fn ensure_groups(&self) -> Result<(), StoreError> {
        for lane in Lane::ALL {
            self.ensure_group(lane).await?;
        }
        Ok(())
    }

    async fn ensure_group(&self, lane: Lane) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let r: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.queue_key(lane))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn transition_args(
        &self,
        id: &str,
        change: &Change,
    ) -> Result<(String, String, String, String), StoreError> {
        let allowed = change
            .to
            .allowed_from()
            .iter()
            .fold(String::from(","), |mut s, st| {
                s.push_str(st.as_str());
                s.push(',');
                s
            });
        let event =
            serde_json::to_string(&change.event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let payload = CallbackPayload {
            message_id: id.to_string(),
            status: change.to,
            at: change.event.at,
            reason: change.event.reason.clone(),
        }
        .encode();
        Ok((allowed, event, payload, crate::model::new_message_id()))
    }

    async fn finish(
        &self,
        lease: &Lease,
        change: Option<&Change>,
        correlation: Option<(&str, &[String])>,
        retry: Option<(String, i64)>,
        dlq_reason: Option<&str>,
        handover: Option<&Handover>,
    ) -> Result<Transition, StoreError> {
        let corr_val = match correlation {
            Some((_, ids)) if !ids.is_empty() => lease.job.id.clone(),
            _ => String::new(),
        };
        let mut inv = self.finish.prepare_invoke();
        inv.key(self.rec_key(&lease.job.id))
            .key(self.queue_key(Lane::Webhook))
            .key(self.queue_key(lease.lane))
            .key(format!("{}:c:-", self.prefix))
            .key(self.sched_key(lease.lane))
            .key(self.dlq_key(lease.lane));
        let next_lane = handover.map_or(lease.lane, |h| h.lane);
        inv.key(self.queue_key(next_lane))
            .key(self.sched_key(next_lane));
        // Correlation keys follow the fixed ones: KEYS[9..].
        if let Some((connector, ids)) = correlation {
            for id in ids {
                inv.key(self.corr_key(connector, id));
            }
        }
        inv.arg(GROUP).arg(&lease.entry);
        match change {
            Some(ch) => {
                let (allowed, event, payload, cbjob) = self.transition_args(&lease.job.id, ch)?;
                inv.arg(ch.to.as_str())
                    .arg(allowed)
                    .arg(event)
                    .arg(payload)
                    .arg(cbjob);
            }
            None => {
                inv.arg("").arg("").arg("").arg("").arg("");
            }
        }
        inv.arg(corr_val).arg(self.corr_ttl_s);
        match retry {
            Some((member, score)) => inv.arg(member).arg(score),
            None => inv.arg("").arg(0),
        };
        let parts = change
            .and_then(|c| c.parts)
            .filter(|&n| n > 1)
            .map_or_else(String::new, |n| n.to_string());
        inv.arg(dlq_reason.unwrap_or(""))
            .arg(&lease.job.id)
            .arg(lease.job.attempt)
            .arg(&lease.job.payload)
            .arg(parts);
        match handover {
            Some(h) => {
                let note = match &h.note {
                    Some(ev) => {
                        serde_json::to_string(ev).map_err(|e| StoreError::Corrupt(e.to_string()))?
                    }
                    None => String::new(),
                };
                inv.arg(encode_member(&h.job))
                    .arg(h.at_ms.map_or_else(String::new, |t| t.to_string()))
                    .arg(&h.job.id)
                    .arg(h.job.attempt)
                    .arg(&h.job.payload)
                    .arg(note);
            }
            None => {
                inv.arg("").arg("").arg("").arg(0).arg("").arg("");
            }
        }
        let mut c = self.conn.clone();
        let (code, cur): (i64, String) = inv.invoke_async(&mut c).await.map_err(unavailable)?;
        transition_result(code, &cur)
    }

    /// Turn stream entries into leases. An entry this version cannot read would stay
    /// pending for ever and be reclaimed again and again: drop it loudly instead.
    async fn leases(
        &self,
        lane: Lane,
        ids: Vec<StreamId>,
        reclaimed: bool,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut bad = Vec::new();
        for e in ids {
            match job_from_fields(&e) {
                Some(job) => out.push(Lease {
                    lane,
                    entry: e.id,
                    job,
                    reclaimed,
                }),
                None => bad.push(e.id),
            }
        }
        if !bad.is_empty() {
            tracing::error!(%lane, entries = ?bad, "Dropping unreadable queue entries.");
            let mut p = redis::pipe();
            p.cmd("XACK")
                .arg(self.queue_key(lane))
                .arg(GROUP)
                .arg(&bad)
                .ignore();
            p.cmd("XDEL").arg(self.queue_key(lane)).arg(&bad).ignore();
            let mut c = self.conn.clone();
            let _: () = p.query_async(&mut c).await.map_err(unavailable)?;
        }
        Ok(out)
    }

    /// Remove everything under this store's prefix (tests only).
    #[doc(hidden)]
    pub async fn flush_prefix(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The event recorded when one part of a multipart message is delivered: the message
/// stays `submitted` until all are.
fn part_event(change: &Change) -> Result<String, StoreError> {
    let Some(part) = &change.part else {
        return Ok(String::new());
    };
    let ev = Event {
        status: Status::Submitted,
        at: change.event.at,
        reason: None,
        detail: Some(format!("part {part} delivered")),
    };
    serde_json::to_string(&ev).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn transition_result(code: i64, cur: &str) -> Result<Transition, StoreError> {
    let status = || cur.parse::<Status>().map_err(StoreError::Corrupt);
    Ok(match code {
        0 => Transition::Missing,
        1 => Transition::Applied { from: status()? },
        2 => Transition::Refused { current: status()? },
        4 => Transition::InFlight,
        5 => Transition::Partial,
        // No change was requested: report the lease as finished.
        _ => Transition::Applied {
            from: Status::Queued,
        },
    })
}

fn field_str(e: &StreamId, k: &str) -> Option<String> {
    match e.map.get(k)? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn job_from_fields(e: &StreamId) -> Option<Job> {
    Some(Job {
        id: field_str(e, "j")?,
        attempt: field_str(e, "n")?.parse().ok()?,
        payload: field_str(e, "p").unwrap_or_default(),
    })
}

fn parse_record(
    d: Option<String>,
    s: Option<String>,
    e: Option<String>,
) -> Result<Option<Record>, StoreError> {
    let (Some(d), Some(s)) = (d, s) else {
        return Ok(None);
    };
    let data: MessageData = serde_json::from_str(&d)
        .map_err(|err| StoreError::Corrupt(format!("message data: {err}")))?;
    let status = s.parse::<Status>().map_err(StoreError::Corrupt)?;
    let events = e
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(serde_json::from_str::<Event>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| StoreError::Corrupt(format!("message events: {err}")))?;
    Ok(Some(Record {
        data,
        status,
        events,
    }))
}

/// A record that does not parse (written by a newer version, or damaged) must not stall
/// a whole batch: it is reported and treated as absent.
fn parse_or_log(d: Option<String>, s: Option<String>, e: Option<String>) -> Option<Record> {
    parse_record(d, s, e).unwrap_or_else(|err| {
        tracing::error!(error = %err, "Unreadable message record; skipping it.");
        None
    })
}

fn stream_age_ms(entry_id: &str, now_ms: i64) -> u64 {
    let ms: i64 = entry_id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now_ms);
    (now_ms - ms).max(0) as u64
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn accept(
        &self,
        msgs: &[NewMessage],
        idem: Option<IdemWrite<'_>>,
    ) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.atomic();
        let now = crate::model::now_ms();
        for m in msgs {
            let rec = self.rec_key(&m.id);
            // A scheduled message is kept for the retention period after it is due.
            let ttl = self.retention_s + m.due_ms.map_or(0, |d| ((d - now).max(0) / 1000) as u64);
            let mut events = String::new();
            for (i, ev) in m.events.iter().enumerate() {
                if i > 0 {
                    events.push('\n');
                }
                events.push_str(
                    &serde_json::to_string(ev).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            p.cmd("HSET")
                .arg(&rec)
                .arg("d")
                .arg(&m.data_json)
                .arg("s")
                .arg(m.status.as_str())
                .arg("e")
                .arg(events)
                .arg("cb")
                .arg(if m.notify { "1" } else { "0" })
                .ignore();
            p.cmd("EXPIRE").arg(&rec).arg(ttl).ignore();
            let lane = Lane::Channel(m.channel);
            match (m.status, m.due_ms) {
                (Status::Scheduled, Some(due)) => {
                    let member = encode_member(&Job {
                        id: m.id.clone(),
                        attempt: 0,
                        payload: String::new(),
                    });
                    p.cmd("ZADD")
                        .arg(self.sched_key(lane))
                        .arg(due)
                        .arg(member)
                        .ignore();
                }
                (Status::Held, _) => {
                    p.cmd("ZADD")
                        .arg(self.held_key())
                        .arg(now)
                        .arg(&m.id)
                        .ignore();
                }
                // Refused before queueing: kept for status and history only.
                (Status::Rejected, _) => {}
                _ => {
                    p.cmd("XADD")
                        .arg(self.queue_key(lane))
                        .arg("*")
                        .arg("j")
                        .arg(&m.id)
                        .arg("n")
                        .arg(0)
                        .arg("p")
                        .arg("")
                        .ignore();
                }
            }
            let mut index = |key: String| {
                p.cmd("ZADD").arg(&key).arg(0).arg(&m.id).ignore();
                p.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
            };
            index(self.history_key(&m.tenant, &HistoryKey::To(m.to.clone())));
            if let Some(r) = &m.client_ref {
                index(self.history_key(&m.tenant, &HistoryKey::ClientRef(r.clone())));
            }
        }
        if let Some(w) = idem {
            p.cmd("SET")
                .arg(self.idem_key(w.tenant, w.key))
                .arg(super::encode_idem_done(&w))
                .arg("EX")
                .arg(self.idem_ttl_s)
                .ignore();
        }
        let mut c = self.conn.clone();
        let _: () = p.query_async(&mut c).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.get_many(&[id.to_string()]).await?.pop().flatten())
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for id in ids {
            p.cmd("HMGET")
                .arg(self.rec_key(id))
                .arg("d")
                .arg("s")
                .arg("e");
        }
        let mut c = self.conn.clone();
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            p.query_async(&mut c).await.map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(d, s, e)| parse_or_log(d, s, e))
            .collect())
    }

    async fn begin_delivery(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.begin.prepare_invoke();
        for id in ids {
            inv.key(self.rec_key(id));
        }
        let mut c = self.conn.clone();
        let flat: Vec<String> = inv.invoke_async(&mut c).await.map_err(unavailable)?;
        let some = |v: &String| (!v.is_empty()).then(|| v.clone());
        Ok(flat
            .chunks_exact(3)
            .map(|r| parse_or_log(some(&r[0]), some(&r[1]), some(&r[2])))
            .collect())
    }

    async fn touch(
        &self,
        lane: Lane,
        consumer: &str,
        entries: &[String],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // XCLAIM with min-idle 0 to ourselves resets the entries' idle time.
        let mut c = self.conn.clone();
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(self.queue_key(lane))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entries)
            .arg("JUSTID")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn transition(&self, id: &str, change: &Change) -> Result<Transition, StoreError> {
        let (allowed, event, payload, cbjob) = self.transition_args(id, change)?;
        let mut c = self.conn.clone();
        let (code, cur): (i64, String) = self
            .transition
            .key(self.rec_key(id))
            .key(self.queue_key(Lane::Webhook))
            .arg(change.to.as_str())
            .arg(allowed)
            .arg(event)
            .arg(payload)
            .arg(cbjob)
            .arg(change.part.as_deref().unwrap_or(""))
            .arg(part_event(change)?)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        transition_result(code, &cur)
    }

    async fn history(
        &self,
        tenant: &str,
        key: &HistoryKey,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let max = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let key = self.history_key(tenant, key);
        // Drop ids of records past retention first (ULIDs sort by time), so the set
        // of a frequently contacted recipient does not grow for ever.
        let cutoff_ms = (crate::model::now_ms() as u64).saturating_sub(self.retention_s * 1000);
        let cutoff = ulid::Ulid::from_parts(cutoff_ms, 0).to_string();
        let mut p = redis::pipe();
        p.cmd("ZREMRANGEBYLEX")
            .arg(&key)
            .arg("-")
            .arg(format!("({cutoff}"))
            .ignore();
        p.cmd("ZRANGE")
            .arg(&key)
            .arg(max)
            .arg("-")
            .arg("BYLEX")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let mut c = self.conn.clone();
        let (ids,): (Vec<String>,) = p.query_async(&mut c).await.map_err(unavailable)?;
        Ok(ids)
    }

    async fn idem_begin(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdemBegin, StoreError> {
        let k = self.idem_key(tenant, key);
        let mut c = self.conn.clone();
        for _ in 0..3 {
            // A short reservation: if this request dies, the key frees itself quickly.
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(format!("P|{fingerprint}"))
                .arg("NX")
                .arg("EX")
                .arg(60)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(IdemBegin::New);
            }
            let cur: Option<String> = redis::cmd("GET")
                .arg(&k)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            if let Some(v) = cur {
                return parse_idem(&v);
            }
        }
        Err(StoreError::Unavailable(
            "idempotency key kept changing".into(),
        ))
    }

    async fn idem_abort(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let k = self.idem_key(tenant, key);
        let mut c = self.conn.clone();
        let _: i64 = self
            .idem_abort
            .key(k)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut c = match self.blocking.iter().find(|(l, _)| *l == lane) {
            Some((_, c)) => c.clone(),
            None => self.conn.clone(),
        };
        for _ in 0..2 {
            let r: Result<Option<StreamReadReply>, RedisError> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(self.queue_key(lane))
                .arg(">")
                .query_async(&mut c)
                .await;
            match r {
                Ok(reply) => {
                    let ids = reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                        .unwrap_or_default();
                    return self.leases(lane, ids, false).await;
                }
                // The stream or group vanished (Redis restarted without data): recreate.
                Err(e) if e.code() == Some("NOGROUP") => self.ensure_groups().await?,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(Vec::new())
    }

    async fn reclaim(
        &self,
        lane: Lane,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let start = {
            let g = self
                .reclaim_cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            g.get(&lane).cloned().unwrap_or_else(|| "0-0".to_string())
        };
        let mut c = self.conn.clone();
        let r: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
            .arg(self.queue_key(lane))
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(start)
            .arg("COUNT")
            .arg(max)
            .query_async(&mut c)
            .await;
        match r {
            Ok(reply) => {
                self.reclaim_cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(lane, reply.next_stream_id.clone());
                self.leases(lane, reply.claimed, true).await
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_groups().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        change: Option<&Change>,
        correlation: Option<(&str, &[String])>,
    ) -> Result<Transition, StoreError> {
        self.finish(lease, change, correlation, None, None, None)
            .await
    }

    async fn complete_handover(
        &self,
        lease: &Lease,
        change: Option<&Change>,
        correlation: Option<(&str, &[String])>,
        next: &Handover,
    ) -> Result<Transition, StoreError> {
        self.finish(lease, change, correlation, None, None, Some(next))
            .await
    }

    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:once:{key}", self.prefix))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn forget_seen(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("DEL")
            .arg(format!("{}:once:{key}", self.prefix))
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn retry(&self, lease: &Lease, at_ms: i64, attempt: u32) -> Result<(), StoreError> {
        let next = Job {
            attempt,
            ..lease.job.clone()
        };
        self.finish(
            lease,
            None,
            None,
            Some((encode_member(&next), at_ms)),
            None,
            None,
        )
        .await?;
        Ok(())
    }

    async fn bury(
        &self,
        lease: &Lease,
        reason: &str,
        change: Option<&Change>,
    ) -> Result<Transition, StoreError> {
        let reason = if reason.is_empty() { "dead" } else { reason };
        self.finish(lease, change, None, None, Some(reason), None)
            .await
    }

    async fn promote_due(&self, lane: Lane, now_ms: i64, max: usize) -> Result<usize, StoreError> {
        let (prefix, event) = match lane {
            Lane::Channel(_) => (
                format!("{}:m:", self.prefix),
                serde_json::to_string(&Event {
                    status: Status::Queued,
                    at: now_ms,
                    reason: None,
                    detail: None,
                })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
            Lane::Webhook => (String::new(), String::new()),
        };
        let mut c = self.conn.clone();
        let n: usize = self
            .promote
            .key(self.sched_key(lane))
            .key(self.queue_key(lane))
            .arg(now_ms)
            .arg(max)
            .arg(prefix)
            .arg(event)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn correlate(
        &self,
        connector: &str,
        provider_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("GET")
            .arg(self.corr_key(connector, provider_id))
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn correlate_many(
        &self,
        connector: &str,
        provider_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if provider_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for id in provider_ids {
            cmd.arg(self.corr_key(connector, id));
        }
        let mut c = self.conn.clone();
        // MGET with one key answers a one-element array too.
        cmd.query_async(&mut c).await.map_err(unavailable)
    }

    async fn lane_stats(&self, lane: Lane, now_ms: i64) -> Result<LaneStats, StoreError> {
        let mut p = redis::pipe();
        p.cmd("XLEN").arg(self.queue_key(lane));
        p.cmd("ZCARD").arg(self.sched_key(lane));
        p.cmd("XLEN").arg(self.dlq_key(lane));
        p.cmd("XRANGE")
            .arg(self.queue_key(lane))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        let mut c = self.conn.clone();
        let (depth, scheduled, dead, first): (u64, u64, u64, StreamRangeReply) =
            p.query_async(&mut c).await.map_err(unavailable)?;
        let oldest_age_ms = first
            .ids
            .first()
            .map_or(0, |e| stream_age_ms(&e.id, now_ms));
        Ok(LaneStats {
            depth,
            scheduled,
            dead,
            oldest_age_ms,
        })
    }

    async fn dead_letters(&self, lane: Lane, max: usize) -> Result<Vec<(Job, String)>, StoreError> {
        let mut c = self.conn.clone();
        let r: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.dlq_key(lane))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(r.ids
            .iter()
            .filter_map(|e| {
                Some((
                    job_from_fields(e)?,
                    field_str(e, "reason").unwrap_or_default(),
                ))
            })
            .collect())
    }

    async fn suppress(&self, tenant: &str, address: &str, reason: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("HSET")
            .arg(self.sup_key(tenant))
            .arg(address)
            .arg(reason)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = redis::cmd("HDEL")
            .arg(self.sup_key(tenant))
            .arg(address)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn suppressed(
        &self,
        tenant: &str,
        addresses: &[&str],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.sup_key(tenant));
        for a in addresses {
            cmd.arg(*a);
        }
        // HMGET with one field answers a one-element array too.
        cmd.query_async(&mut c).await.map_err(unavailable)
    }

    async fn suppressions(
        &self,
        tenant: &str,
        max: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut c = self.conn.clone();
        let mut out: Vec<(String, String)> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(self.sup_key(tenant))
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            out.extend(page);
            cursor = next;
            if cursor == 0 || out.len() >= max {
                break;
            }
        }
        out.sort();
        out.truncate(max);
        Ok(out)
    }

    async fn enqueue(&self, lane: Lane, job: Job) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("XADD")
            .arg(self.queue_key(lane))
            .arg("*")
            .arg("j")
            .arg(&job.id)
            .arg("n")
            .arg(job.attempt)
            .arg("p")
            .arg(&job.payload)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn counters(&self, needs: Vec<Needs>) -> Result<Vec<Counters>, StoreError> {
        use std::collections::HashMap;
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        // A batch shares many counters (its country, prefixes, number blocks): each
        // distinct read goes to Redis once. Reads happen before any increment of the
        // request, so sharing changes no answer.
        let mut slot: HashMap<(&str, i64, i64), usize> = HashMap::new();
        let mut opt: HashMap<&str, usize> = HashMap::new();
        let mut p = redis::pipe();
        let mut n_cmds = 0usize;
        for n in &needs {
            for r in n.reads() {
                let id = (r.key.as_str(), *r.fields.start(), *r.fields.end());
                slot.entry(id).or_insert_with(|| {
                    let mut cmd = redis::cmd("HMGET");
                    cmd.arg(self.af_key(&r.key));
                    for f in r.field_names() {
                        cmd.arg(f);
                    }
                    p.add_command(cmd);
                    n_cmds += 1;
                    n_cmds - 1
                });
            }
            opt.entry(n.opt_out_key()).or_insert_with(|| {
                p.cmd("EXISTS").arg(self.af_key(n.opt_out_key()));
                n_cmds += 1;
                n_cmds - 1
            });
        }
        let mut c = self.conn.clone();
        let mut replies: Vec<Value> = p.query_async(&mut c).await.map_err(unavailable)?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("anti-fraud counters: {what}"));
        if replies.len() != n_cmds {
            return Err(corrupt("short reply"));
        }
        let mut out = Vec::with_capacity(needs.len());
        let mut values_of: HashMap<usize, Vec<Option<u64>>> = HashMap::new();
        for n in &needs {
            for r in n.reads() {
                let i = slot[&(r.key.as_str(), *r.fields.start(), *r.fields.end())];
                if let std::collections::hash_map::Entry::Vacant(e) = values_of.entry(i) {
                    // Each reply is read once: take it rather than copy it.
                    let reply = std::mem::replace(&mut replies[i], Value::Nil);
                    e.insert(redis::from_redis_value(reply).map_err(|e| corrupt(&e.to_string()))?);
                }
            }
        }
        let opted: Vec<bool> = needs
            .iter()
            .map(|n| {
                redis::from_redis_value::<bool>(replies[opt[n.opt_out_key()]].clone())
                    .map_err(|e| corrupt(&e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let sums: Vec<Vec<u64>> = needs
            .iter()
            .map(|n| {
                n.reads()
                    .iter()
                    .map(|r| {
                        let i = slot[&(r.key.as_str(), *r.fields.start(), *r.fields.end())];
                        r.sum(values_of[&i].iter().copied())
                    })
                    .collect()
            })
            .collect();
        drop((slot, opt));
        for ((n, values), opted_out) in needs.into_iter().zip(sums).zip(opted) {
            out.push(Counters::new(n, values, opted_out).map_err(|e| corrupt(&e.to_string()))?);
        }
        Ok(out)
    }

    async fn count(&self, record: &[Increment]) -> Result<(), StoreError> {
        use std::collections::{BTreeSet, HashMap};
        if record.is_empty() {
            return Ok(());
        }
        // Merge per key: one HINCRBY per (key, bucket) with the summed amount, one
        // EXPIRE with the longest TTL, one HDEL of the stale buckets.
        struct PerKey {
            fields: Vec<(i64, u64)>,
            ttl: u64,
            stale: BTreeSet<i64>,
        }
        let mut keys: HashMap<&str, PerKey> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for inc in record {
            let k = keys.entry(inc.key.as_str()).or_insert_with(|| {
                order.push(inc.key.as_str());
                PerKey {
                    fields: Vec::new(),
                    ttl: 0,
                    stale: BTreeSet::new(),
                }
            });
            match k.fields.iter_mut().find(|(f, _)| *f == inc.field) {
                Some((_, by)) => *by += inc.by,
                None => k.fields.push((inc.field, inc.by)),
            }
            k.ttl = k.ttl.max(inc.ttl.as_secs().max(1));
            k.stale.extend(inc.stale.clone());
        }
        let mut p = redis::pipe();
        for name in order {
            let k = &keys[name];
            let key = self.af_key(name);
            for (field, by) in &k.fields {
                p.cmd("HINCRBY").arg(&key).arg(field).arg(by).ignore();
            }
            p.cmd("EXPIRE").arg(&key).arg(k.ttl).ignore();
            let stale: Vec<i64> = k
                .stale
                .iter()
                .copied()
                .filter(|s| !k.fields.iter().any(|(f, _)| f == s))
                .collect();
            if !stale.is_empty() {
                p.cmd("HDEL").arg(&key).arg(stale).ignore();
            }
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c).await.map_err(unavailable)
    }

    async fn set_opt_out(
        &self,
        key: &str,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let applied: i64 = self
            .opt_out
            .key(self.af_key(key))
            .key(self.af_key(&format!("{key}:at")))
            .arg(if opted_out { "1" } else { "0" })
            .arg(at_ms)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(applied == 1)
    }

    async fn held(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(self.held_key())
            .arg(0)
            .arg(max.max(1) as i64 - 1)
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn held_count(&self) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(self.held_key())
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn decide_held(
        &self,
        id: &str,
        change: &Change,
        due_ms: i64,
        channel: Channel,
    ) -> Result<Transition, StoreError> {
        let (allowed, event, payload, cbjob) = self.transition_args(id, change)?;
        let member = encode_member(&Job {
            id: id.to_string(),
            attempt: 0,
            payload: String::new(),
        });
        let mut c = self.conn.clone();
        let (code, cur): (i64, String) = self
            .decide_held
            .key(self.rec_key(id))
            .key(self.queue_key(Lane::Webhook))
            .key(self.sched_key(Lane::Channel(channel)))
            .key(self.held_key())
            .arg(change.to.as_str())
            .arg(allowed)
            .arg(event)
            .arg(payload)
            .arg(cbjob)
            .arg(id)
            .arg(due_ms)
            .arg(member)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        transition_result(code, &cur)
    }

    async fn beat(&self, consumer: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.alive_key(consumer))
            .arg(crate::model::now_ms())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn take_over_dead(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let queue = self.queue_key(lane);
        let mut c = self.conn.clone();
        let info: Result<StreamInfoConsumersReply, RedisError> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&queue)
            .arg(GROUP)
            .query_async(&mut c)
            .await;
        let info = match info {
            Ok(i) => i,
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(unavailable(e)),
        };
        let others: Vec<_> = info
            .consumers
            .into_iter()
            .filter(|k| k.name != consumer)
            .collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for k in &others {
            p.cmd("EXISTS").arg(self.alive_key(&k.name));
        }
        let alive: Vec<bool> = p.query_async(&mut c).await.map_err(unavailable)?;
        let mut out = Vec::new();
        for (k, alive) in others.iter().zip(alive) {
            if alive || out.len() >= max {
                continue;
            }
            if k.pending == 0 {
                // Nothing held: forget it, so the group's list stays short. Only a
                // consumer with an empty pending list is deleted (DELCONSUMER
                // would drop its entries otherwise).
                let _: Result<i64, _> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&queue)
                    .arg(GROUP)
                    .arg(&k.name)
                    .query_async(&mut c)
                    .await;
                continue;
            }
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&queue)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(max - out.len())
                .arg(&k.name)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let ids: Vec<String> = pending.ids.into_iter().map(|p| p.id).collect();
            if ids.is_empty() {
                continue;
            }
            let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                .arg(&queue)
                .arg(GROUP)
                .arg(consumer)
                .arg(0)
                .arg(&ids)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            tracing::info!(%lane, dead = %k.name, count = claimed.ids.len(), "Took over the entries of an instance whose heartbeat lapsed.");
            out.extend(self.leases(lane, claimed.ids, true).await?);
        }
        Ok(out)
    }
}

impl RedisStore {
    /// Connect and prepare consumer groups; failure here is not fatal (the store is lazy).
    pub async fn init(&self) -> Result<(), StoreError> {
        self.ensure_groups().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_records_parse() {
        assert_eq!(
            parse_idem("P|abc").unwrap(),
            IdemBegin::InProgress {
                fingerprint: "abc".into()
            }
        );
        assert_eq!(
            parse_idem("D|abc|202|{\"a\":\"x|y\"}").unwrap(),
            IdemBegin::Done {
                fingerprint: "abc".into(),
                status: 202,
                body: "{\"a\":\"x|y\"}".into()
            }
        );
        assert!(parse_idem("X|").is_err());
    }

    #[test]
    fn stream_ids_give_ages() {
        assert_eq!(stream_age_ms("1000-0", 1500), 500);
        assert_eq!(stream_age_ms("2000-3", 1500), 0);
    }
}
