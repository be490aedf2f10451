//! The production store on Redis.
//!
//! Keys are built in [`crate::keys`]; every key of a partition carries the hash
//! tag `{pN}`:
//! * `{pN}:m:{id}` hash: `d` message data (JSON), `s` status, `e` events (JSON lines),
//!   `cb` 1 when status changes are posted back, `x` while a worker submits it;
//!   expires after retention.
//! * `{pN}:q:{lane}` stream with consumer group `workers`; entries carry `j` job id,
//!   `n` attempt, `p` task (JSON, empty for a delivery) and are deleted when
//!   acknowledged, so `XLEN` is the depth. One per partition per lane.
//! * `{pN}:s:{lane}` sorted set of jobs waiting for a time (send_at, retry
//!   backoff); `{pN}:dlq:{lane}` dead letters; `{pN}:held` held message ids.
//! * `{pN}:h:{tenant}:to:{to}` sorted set of a recipient's message ids (score 0,
//!   so ULIDs sort by time lexicographically); `ref:{tenant}:{ref}` the same by
//!   client reference (its own slot).
//! * `c:{connector}:{provider id}` → message id, for receipts; `i:{tenant}:{hash}`
//!   idempotency records; `sup:{tenant}` suppressed addresses; `once:{key}` replay
//!   marks; `af:…` anti-fraud counters and opt-outs; `alive:{consumer}` heartbeats.
//!
//! Each atomic step touches one partition: a Lua script (`lua/*.lua`) for
//! anything that reads before it writes (transitions, finishing a lease,
//! promoting due jobs), every key it touches passed in `KEYS`. Work of several
//! partitions goes in one pipelined round trip. State outside the partition is
//! written in its own step, in an order that keeps the crash-safety contract:
//! correlation before the lease's acknowledgement, messages before their
//! idempotent response. Scripts go through `EVALSHA`; a restarted Redis with an
//! empty script cache gets them loaded again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::streams::{
    StreamAutoClaimReply, StreamClaimReply, StreamId, StreamInfoConsumersReply,
    StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Script, Value};

use super::{
    encode_member, parse_idem, CallbackPayload, Change, Correlation, EntryRef, HistoryKey,
    IdemBegin, IdemWrite, Job, Lane, LaneStats, Lease, NewMessage, Outcome, Partitions, Store,
    StoreError, Task, Transition,
};
use crate::keys::Keys;

mod campaigns;
mod content;
mod operator;
use crate::model::{new_message_id_in, now_ms, partition_of, Event, MessageData, Record, Status};
use goniec_antifraud::{Cap, Counters, Increment, Needs};
use goniec_config::{Channel, StoreBackend};

const GROUP: &str = "workers";

const TRANSITION_LIB: &str = include_str!("lua/transition.lua");

/// The scripts, each loaded once per Redis (again after a restart).
struct Scripts {
    transition: Script,
    finish: Script,
    promote: Script,
    idem_abort: Script,
    begin: Script,
    opt_out: Script,
    decide_held: Script,
    template_put: Script,
    click: Script,
    campaign_add: Script,
    campaign_begin: Script,
    campaign_commit: Script,
    campaign_event: Script,
    dead_requeue: Script,
    cap_reserve: Script,
    cap_release: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_lib = |main: &str| Script::new(&format!("{TRANSITION_LIB}{main}"));
        Scripts {
            transition: with_lib(include_str!("lua/transition_main.lua")),
            finish: with_lib(include_str!("lua/finish.lua")),
            decide_held: with_lib(include_str!("lua/decide_held.lua")),
            promote: Script::new(include_str!("lua/promote.lua")),
            idem_abort: Script::new(include_str!("lua/idem_abort.lua")),
            begin: Script::new(include_str!("lua/begin.lua")),
            opt_out: Script::new(include_str!("lua/opt_out.lua")),
            template_put: Script::new(include_str!("lua/template_put.lua")),
            click: with_lib(include_str!("lua/click.lua")),
            campaign_add: Script::new(include_str!("lua/campaign_add.lua")),
            campaign_begin: Script::new(include_str!("lua/campaign_begin.lua")),
            campaign_commit: Script::new(include_str!("lua/campaign_commit.lua")),
            campaign_event: Script::new(include_str!("lua/campaign_event.lua")),
            dead_requeue: Script::new(include_str!("lua/dead_requeue.lua")),
            cap_reserve: Script::new(include_str!("lua/cap_reserve.lua")),
            cap_release: Script::new(include_str!("lua/cap_release.lua")),
        }
    }

    fn all(&self) -> [&Script; 16] {
        [
            &self.cap_reserve,
            &self.cap_release,
            &self.dead_requeue,
            &self.campaign_add,
            &self.campaign_begin,
            &self.campaign_commit,
            &self.campaign_event,
            &self.template_put,
            &self.click,
            &self.transition,
            &self.finish,
            &self.promote,
            &self.idem_abort,
            &self.begin,
            &self.opt_out,
            &self.decide_held,
        ]
    }
}

/// A connection to one Redis or to a Redis Cluster. Cheap to clone.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the connection comes from: one server (connected lazily by the
/// connection manager), or a cluster (connected on first use, then kept; the
/// cluster connection follows slot moves and reconnects by itself).
#[derive(Clone)]
enum Backend {
    Single {
        conn: ConnectionManager,
        /// One connection per lane for `XREADGROUP … BLOCK`: a blocked read
        /// holds its connection, so sharing one would make every lane wait for
        /// the others' blocks.
        blocking: Vec<(Lane, ConnectionManager)>,
    },
    Cluster {
        client: Arc<ClusterClient>,
        conn: Arc<tokio::sync::OnceCell<ClusterConnection>>,
    },
}

/// Commands for one round trip, each routed by a key. On one Redis they go as
/// one pipeline (one `MULTI`/`EXEC` when atomic); on a cluster as one pipeline
/// per slot, all sent at once (each atomic on its own when asked).
#[derive(Default)]
struct Batch {
    cmds: Vec<(String, Cmd, bool)>,
    atomic: bool,
}

impl Batch {
    fn new() -> Self {
        Batch::default()
    }

    fn atomic() -> Self {
        Batch {
            atomic: true,
            ..Batch::default()
        }
    }

    /// Add a command routed by `key` whose reply is kept.
    fn cmd(&mut self, key: &str, name: &str) -> &mut Cmd {
        self.push(key, redis::cmd(name), true)
    }

    /// Add a command routed by `key` whose reply is dropped.
    fn ignored(&mut self, key: &str, name: &str) -> &mut Cmd {
        self.push(key, redis::cmd(name), false)
    }

    /// Add a script call; `keys` are its `KEYS` (the first routes it); the
    /// caller adds its `ARGV`.
    fn script(&mut self, script: &Script, keys: &[String]) -> &mut Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(script.get_hash()).arg(keys.len()).arg(keys);
        let route = keys.first().cloned().unwrap_or_default();
        self.push(&route, c, true)
    }

    fn push(&mut self, key: &str, cmd: Cmd, keep: bool) -> &mut Cmd {
        self.cmds.push((key.to_string(), cmd, keep));
        &mut self.cmds.last_mut().expect("just pushed").1
    }

    fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
}

/// The Redis backend (one server or a cluster). Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    backend: Backend,
    keys: Keys,
    parts: Partitions,
    retention_s: u64,
    idem_ttl_s: u64,
    corr_ttl_s: u64,
    scripts: Arc<Scripts>,
    /// Where the last `XAUTOCLAIM` of each lane and partition stopped, so scans
    /// cover the whole pending list instead of its first page over and over.
    reclaim_cursor: Arc<std::sync::Mutex<HashMap<StreamOf, String>>>,
    /// Each lane's streams (partition, tenant) as last read from the tenant
    /// sets, and when; refreshed after [`STREAMS_FRESH`] or when this process
    /// writes to a stream it did not know.
    streams: Arc<std::sync::Mutex<HashMap<Lane, StreamList>>>,
    /// Tenants whose channel-lane streams `claim` leaves out (paused).
    skip: Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
}

/// A stream: its lane, partition and tenant.
type StreamOf = (Lane, u16, String);
/// A lane's streams (partition, tenant) and when they were read.
type StreamList = (std::time::Instant, Vec<(u16, String)>);

/// How long a lane's list of streams is used before it is read again: another
/// instance's new tenant stream is read within this long.
const STREAMS_FRESH: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.backend())
            .field("keys", &self.keys)
            .field("partitions", &self.parts.count())
            .finish()
    }
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn server_error(v: &Value) -> Option<&redis::ServerError> {
    match v {
        Value::ServerError(e) => Some(e),
        _ => None,
    }
}

fn is_noscript(v: &Value) -> bool {
    server_error(v).is_some_and(|e| e.kind() == Some(redis::ServerErrorKind::NoScript))
}

fn is_nogroup(v: &Value) -> bool {
    server_error(v).is_some_and(|e| e.code() == "NOGROUP")
}

/// A reply as `T`; a server error is `Unavailable` with its text.
fn parse<T: FromRedisValue>(v: Value) -> Result<T, StoreError> {
    T::from_redis_value(v).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// A transition's script arguments: allowed states, event, callback task and id.
struct TransitionArgs {
    allowed: String,
    event: String,
    callback: String,
    callback_id: String,
}

impl RedisStore {
    /// Connect lazily: the gateway starts even while Redis is down (and is not
    /// ready). `store.backend` picks one server (`url`) or a cluster (`nodes`).
    pub fn new(cfg: &goniec_config::Store) -> Result<Self, StoreError> {
        let backend = match cfg.backend {
            StoreBackend::RedisCluster => {
                let client = ClusterClientBuilder::new(cfg.nodes.clone())
                    .connection_timeout(cfg.timeout)
                    .response_timeout(cfg.timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("bad cluster nodes: {e}")))?;
                Backend::Cluster {
                    client: Arc::new(client),
                    conn: Arc::new(tokio::sync::OnceCell::new()),
                }
            }
            _ => {
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
                let blocking_cfg =
                    base.set_response_timeout(Some(cfg.timeout + Duration::from_secs(2)));
                let blocking = Lane::ALL
                    .into_iter()
                    .map(|lane| {
                        ConnectionManager::new_lazy_with_config(
                            client.clone(),
                            blocking_cfg.clone(),
                        )
                        .map(|c| (lane, c))
                        .map_err(unavailable)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Backend::Single { conn, blocking }
            }
        };
        Ok(RedisStore {
            backend,
            keys: Keys::new(&cfg.prefix),
            parts: Partitions::new(cfg.partitions),
            retention_s: cfg.retention.as_secs().max(1),
            idem_ttl_s: cfg.idempotency_ttl.as_secs().max(1),
            corr_ttl_s: cfg.correlation_ttl.as_secs().max(1),
            scripts: Arc::new(Scripts::new()),
            reclaim_cursor: Default::default(),
            streams: Default::default(),
            skip: Default::default(),
        })
    }

    /// A raw connection to this store's Redis or cluster, for tests and tools
    /// that look at keys directly (one key per command on a cluster).
    #[doc(hidden)]
    pub async fn raw_connection(
        &self,
    ) -> Result<impl redis::aio::ConnectionLike + Clone + Send + Sync, StoreError> {
        self.conn().await
    }

    /// The key builder of this store's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Connect and prepare consumer groups; failure here is not fatal (the store is lazy).
    pub async fn init(&self) -> Result<(), StoreError> {
        self.ensure_groups(&[]).await
    }

    fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        match &self.backend {
            Backend::Single { conn, .. } => Ok(Conn::Single(conn.clone())),
            Backend::Cluster { client, conn } => {
                let c = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await
                    .map_err(unavailable)?;
                Ok(Conn::Cluster(c.clone()))
            }
        }
    }

    /// One command, its reply as `T`.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        cmd.query_async(&mut c).await.map_err(unavailable)
    }

    /// Run a batch: every kept reply, in order, a server error as
    /// `Value::ServerError` for the caller to judge (an error of a command
    /// whose reply is dropped fails the batch). When Redis lost its script
    /// cache (restarted), every script is loaded and the batch runs again:
    /// `EVALSHA` that failed with `NOSCRIPT` did nothing, and the rest of a batch
    /// is safe to repeat (the scripts check before they write).
    async fn run_raw(&self, b: &Batch) -> Result<Vec<Value>, StoreError> {
        if b.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run_once(b).await?;
        if out.iter().any(is_noscript) {
            self.load_scripts().await?;
            return self.run_once(b).await;
        }
        Ok(out)
    }

    /// Load every script (after Redis lost its script cache). One command each:
    /// on a cluster, `SCRIPT LOAD` goes to every node (in a pipeline it would
    /// reach only one).
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        for s in self.scripts.all() {
            s.load_async(&mut c).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Run a batch of independent script calls that must each run at most once
    /// (they count: `cap_reserve`, `cap_release`), every reply kept. When a node
    /// lost its script cache, only the calls that failed with `NOSCRIPT` run
    /// again, in order; on a cluster the others already ran on their nodes.
    async fn run_each_once(&self, b: &Batch) -> Result<Vec<Value>, StoreError> {
        debug_assert!(!b.atomic && b.cmds.iter().all(|(_, _, keep)| *keep));
        if b.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = self.run_once(b).await?;
        let failed: Vec<usize> = (0..out.len()).filter(|&i| is_noscript(&out[i])).collect();
        if !failed.is_empty() {
            self.load_scripts().await?;
            let mut again = Batch::new();
            for &i in &failed {
                let (key, cmd, keep) = &b.cmds[i];
                again.push(key, cmd.clone(), *keep);
            }
            for (i, reply) in failed.into_iter().zip(self.run_once(&again).await?) {
                out[i] = reply;
            }
        }
        Ok(out)
    }

    /// Run a batch; every kept reply must be a success. Returns them in order.
    async fn run<T: FromRedisValue>(&self, b: &Batch) -> Result<T, StoreError> {
        let replies = self.run_raw(b).await?;
        if let Some(e) = replies.iter().find_map(server_error) {
            return Err(StoreError::Unavailable(format!("{e:?}")));
        }
        parse(Value::Array(replies))
    }

    async fn run_once(&self, b: &Batch) -> Result<Vec<Value>, StoreError> {
        let pipeline = |cmds: &mut dyn Iterator<Item = &(String, Cmd, bool)>| {
            let mut p = redis::pipe();
            if b.atomic {
                p.atomic();
            }
            for (_, cmd, _) in cmds {
                p.add_command(cmd.clone());
            }
            p.ignore_errors();
            p
        };
        let mut c = self.conn().await?;
        let all: Vec<Value> = if !self.is_cluster() {
            let p = pipeline(&mut b.cmds.iter());
            let v: Value = p.query_async(&mut c).await.map_err(unavailable)?;
            parse_replies(v)?
        } else {
            // One pipeline per slot, all at once; replies put back in order.
            let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
            for (i, (key, _, _)) in b.cmds.iter().enumerate() {
                let slot = Slot::for_key(key);
                match groups.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, v)) => v.push(i),
                    None => groups.push((slot, vec![i])),
                }
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (g, (_, idx)) in groups.iter().enumerate() {
                let p = pipeline(&mut idx.iter().map(|&i| &b.cmds[i]));
                let mut c = c.clone();
                tasks.spawn(async move { (g, p.query_async::<Value>(&mut c).await) });
            }
            let mut all = vec![Value::Nil; b.cmds.len()];
            while let Some(done) = tasks.join_next().await {
                let (g, r) = done.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let replies = parse_replies(r.map_err(unavailable)?)?;
                for (&i, v) in groups[g].1.iter().zip(replies) {
                    all[i] = v;
                }
            }
            all
        };
        // A command whose reply is dropped must still have succeeded: a write
        // refused (READONLY during a failover, OOM under `maxmemory`, NOPERM)
        // would otherwise pass for a stored one.
        if let Some(e) =
            b.cmds
                .iter()
                .zip(&all)
                .find_map(|((_, _, keep), v)| if *keep { None } else { server_error(v) })
        {
            return Err(StoreError::Unavailable(format!("{e:?}")));
        }
        Ok(b.cmds
            .iter()
            .zip(all)
            .filter(|((_, _, keep), _)| *keep)
            .map(|(_, v)| v)
            .collect())
    }

    /// Create the consumer group of every stream (idempotent): the webhook
    /// lane's in every partition, and each channel lane's for every tenant
    /// known to have one, plus `tenants` in every partition (which are then
    /// known).
    async fn ensure_groups(&self, tenants: &[String]) -> Result<(), StoreError> {
        let mut b = Batch::new();
        for lane in Lane::ALL {
            let mut streams = self.stream_list(lane, true).await?;
            if lane != Lane::Webhook {
                for t in tenants {
                    streams.extend(self.parts.all().map(|p| (p, t.clone())));
                }
            }
            streams.sort();
            streams.dedup();
            for (part, tenant) in streams {
                let q = self.keys.queue(part, lane, &tenant);
                b.cmd(&q, "XGROUP")
                    .arg("CREATE")
                    .arg(&q)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM");
                if lane != Lane::Webhook {
                    let set = self.keys.tenants(part, lane);
                    b.ignored(&set, "SADD").arg(&set).arg(&tenant);
                }
            }
        }
        for r in self.run_raw(&b).await? {
            if let Some(e) = server_error(&r) {
                if e.code() != "BUSYGROUP" {
                    return Err(StoreError::Unavailable(format!("creating a queue: {e:?}")));
                }
            }
        }
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// A lane's streams (partition, tenant): the webhook lane has one per
    /// partition; a channel lane one per tenant in each partition, as the
    /// tenant sets say (read at most every [`STREAMS_FRESH`] unless `fresh`).
    /// The lane's streams `claim` reads: all but the skipped tenants'.
    async fn claimable(&self, lane: Lane) -> Result<Vec<(u16, String)>, StoreError> {
        let mut list = self.stream_list(lane, false).await?;
        if lane != Lane::Webhook {
            let skip = self.skip.read().unwrap_or_else(|p| p.into_inner());
            if !skip.is_empty() {
                list.retain(|(_, t)| !skip.contains(t));
            }
        }
        Ok(list)
    }

    async fn stream_list(&self, lane: Lane, fresh: bool) -> Result<Vec<(u16, String)>, StoreError> {
        if lane == Lane::Webhook {
            return Ok(self.parts.all().map(|p| (p, String::new())).collect());
        }
        if !fresh {
            let cache = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, list)) = cache.get(&lane) {
                if at.elapsed() < STREAMS_FRESH {
                    return Ok(list.clone());
                }
            }
        }
        let mut b = Batch::new();
        for part in self.parts.all() {
            let set = self.keys.tenants(part, lane);
            b.cmd(&set, "SMEMBERS").arg(&set);
        }
        let sets: Vec<Vec<String>> = self.run(&b).await?;
        let mut list: Vec<(u16, String)> = self
            .parts
            .all()
            .zip(sets)
            .flat_map(|(p, ts)| ts.into_iter().map(move |t| (p, t)))
            .collect();
        list.sort();
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lane, (std::time::Instant::now(), list.clone()));
        Ok(list)
    }

    /// After writing to a lane's stream of `tenant` in `part`: when this
    /// process did not know that stream, read the list again at the next claim.
    fn note_stream(&self, lane: Lane, part: u16, tenant: &str) {
        if lane == Lane::Webhook {
            return;
        }
        let mut cache = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let known = cache.get(&lane).is_some_and(|(_, list)| {
            list.binary_search_by(|(p, t)| (*p, t.as_str()).cmp(&(part, tenant)))
                .is_ok()
        });
        if !known {
            cache.remove(&lane);
        }
    }

    fn transition_args(&self, id: &str, change: &Change) -> TransitionArgs {
        let allowed = change
            .to
            .allowed_from()
            .iter()
            .fold(String::from(","), |mut s, st| {
                s.push_str(st.as_str());
                s.push(',');
                s
            });
        let callback = Task::Callback(CallbackPayload {
            message_id: id.to_string(),
            status: change.to,
            at: change.event.at,
            reason: change.event.reason.clone(),
            // Spliced in by the script from the record's `h`: must stay
            // `None` here (the script appends the field to this object).
            context: None,
        })
        .encode();
        TransitionArgs {
            allowed,
            event: event_json(&change.event),
            callback,
            // The callback job lives in the message's partition.
            callback_id: new_message_id_in(partition_of(id)),
        }
    }

    /// One lease's keys and arguments for `lua/finish.lua`, and the
    /// correlation to write before it.
    fn finish_step(
        &self,
        lease: &Lease,
        outcome: Outcome,
    ) -> ([String; 8], Vec<String>, Option<Correlation>) {
        let (change, correlation, retry, bury, handover) = match outcome {
            Outcome::Complete {
                change,
                correlation,
            } => (change, correlation, None, None, None),
            Outcome::Retry { at_ms, attempt } => {
                let next = Job {
                    attempt,
                    ..lease.job.clone()
                };
                let member = encode_member(&next, &lease.tenant);
                (None, None, Some((member, at_ms)), None, None)
            }
            Outcome::Bury { reason, change } => {
                let reason = if reason.is_empty() {
                    "dead".to_string()
                } else {
                    reason
                };
                (change, None, None, Some(reason), None)
            }
            Outcome::Handover {
                change,
                correlation,
                next,
            } => (change, correlation, None, None, Some(next)),
        };
        let part = lease.partition;
        let next_lane = handover.as_ref().map_or(lease.lane, |h| h.lane);
        if handover.is_some() {
            self.note_stream(next_lane, part, &lease.tenant);
        }
        let t = lease.tenant.as_str();
        let keys = [
            self.keys.record(&lease.job.id),
            self.keys.queue(part, Lane::Webhook, ""),
            self.keys.queue(part, lease.lane, t),
            self.keys.scheduled(part, lease.lane),
            self.keys.dead(part, lease.lane),
            self.keys.queue(part, next_lane, t),
            self.keys.scheduled(part, next_lane),
            self.keys.tenants(part, next_lane),
        ];
        let mut args = Vec::with_capacity(22);
        args.push(GROUP.to_string());
        args.push(lease.entry.clone());
        match &change {
            Some(ch) => {
                let a = self.transition_args(&lease.job.id, ch);
                args.extend([
                    ch.to.as_str().to_string(),
                    a.allowed,
                    a.event,
                    a.callback,
                    a.callback_id,
                ]);
            }
            None => args.extend(std::iter::repeat_n(String::new(), 5)),
        }
        match retry {
            Some((member, score)) => args.extend([member, score.to_string()]),
            None => args.extend([String::new(), "0".into()]),
        }
        let parts = change
            .as_ref()
            .and_then(|c| c.parts)
            .filter(|&n| n > 1)
            .map_or_else(String::new, |n| n.to_string());
        args.extend([
            bury.unwrap_or_default(),
            lease.job.id.clone(),
            lease.job.attempt.to_string(),
            // A dead letter is kept until an operator acts: without the
            // recipient and callback URL a callback job carries (a requeued
            // one loads its message).
            lease.job.task.without_context().encode(),
            parts,
        ]);
        match &handover {
            Some(h) => args.extend([
                encode_member(&h.job, t),
                h.at_ms.map_or_else(String::new, |t| t.to_string()),
                h.job.id.clone(),
                h.job.attempt.to_string(),
                h.job.task.encode(),
                h.note.as_ref().map(event_json).unwrap_or_default(),
            ]),
            None => args.extend([
                String::new(),
                String::new(),
                String::new(),
                "0".into(),
                String::new(),
                String::new(),
            ]),
        }
        args.push(t.to_string());
        let receipt_check = handover.as_ref().is_some_and(|h| {
            h.at_ms.is_some()
                && h.job.id == lease.job.id
                && matches!(h.job.task, Task::ReceiptCheck(_))
        });
        args.push(if receipt_check { "1" } else { "" }.to_string());
        (keys, args, correlation)
    }

    /// Turn stream entries of one partition into leases. An entry this version
    /// cannot read would stay pending for ever and be reclaimed again and again:
    /// drop it loudly instead.
    async fn leases(
        &self,
        lane: Lane,
        (partition, tenant): (u16, &str),
        ids: Vec<StreamId>,
        reclaimed: bool,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut bad = Vec::new();
        for e in ids {
            match job_from_fields(&e) {
                Some(job) => out.push(Lease {
                    lane,
                    partition,
                    tenant: tenant.to_string(),
                    entry: e.id,
                    job,
                    reclaimed,
                }),
                None => bad.push(e.id),
            }
        }
        if !bad.is_empty() {
            tracing::error!(%lane, partition, entries = ?bad, "Dropping unreadable queue entries.");
            let queue = self.keys.queue(partition, lane, tenant);
            let mut b = Batch::new();
            b.ignored(&queue, "XACK").arg(&queue).arg(GROUP).arg(&bad);
            b.ignored(&queue, "XDEL").arg(&queue).arg(&bad);
            self.run::<()>(&b).await?;
        }
        Ok(out)
    }

    /// Read new entries of these streams of a lane without waiting (a cluster
    /// cannot block on streams of several slots in one command).
    async fn read_new(
        &self,
        lane: Lane,
        consumer: &str,
        per: usize,
        streams: &[(u16, String)],
    ) -> Result<Vec<Value>, StoreError> {
        let mut b = Batch::new();
        for (part, tenant) in streams {
            let q = self.keys.queue(*part, lane, tenant);
            b.cmd(&q, "XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(per)
                .arg("STREAMS")
                .arg(&q)
                .arg(">");
        }
        self.run_raw(&b).await
    }

    /// Remove everything under this store's prefix (tests only).
    #[doc(hidden)]
    pub async fn flush_prefix(&self) -> Result<(), StoreError> {
        // On a cluster, KEYS asks every node and merges the answers.
        let keys: Vec<String> = self
            .query(redis::cmd("KEYS").arg(format!("{}:*", self.keys.prefix())))
            .await?;
        let mut b = Batch::new();
        for k in &keys {
            b.ignored(k, "DEL").arg(k);
        }
        self.run::<()>(&b).await
    }
}

/// The replies of one pipeline (of an atomic one: `EXEC`'s, in order).
fn parse_replies(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        other => parse(other),
    }
}

/// Item indices grouped by partition, in order of first appearance: one script
/// call per group.
fn by_partition(parts: impl Iterator<Item = u16>) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, part) in parts.enumerate() {
        match groups.iter_mut().find(|(p, _)| *p == part) {
            Some((_, v)) => v.push(i),
            None => groups.push((part, vec![i])),
        }
    }
    groups
}

/// Put the `{code, current}` pairs of each group's script call back in the
/// items' order.
fn scatter_transitions(
    groups: &[(u16, Vec<usize>)],
    replies: Vec<Vec<(i64, String)>>,
    n: usize,
) -> Result<Vec<Transition>, StoreError> {
    let mut out = vec![Transition::Missing; n];
    for ((_, idx), pairs) in groups.iter().zip(replies) {
        if pairs.len() != idx.len() {
            return Err(StoreError::Corrupt("short answer from a script".into()));
        }
        for (&i, (code, cur)) in idx.iter().zip(pairs) {
            out[i] = transition_result(code, &cur)?;
        }
    }
    Ok(out)
}

/// An event as its history line. Strings, numbers and enums: cannot fail.
fn event_json(ev: &Event) -> String {
    serde_json::to_string(ev).unwrap_or_default()
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
    let task = Task::decode(&field_str(e, "p").unwrap_or_default())?;
    Some(Job {
        id: field_str(e, "j")?,
        attempt: field_str(e, "n")?.parse().ok()?,
        task,
    })
}

fn parse_record(
    d: Option<String>,
    s: Option<String>,
    e: Option<String>,
    clicks: crate::content::Clicks,
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
        clicks,
    }))
}

/// A record that does not parse (written by a newer version, or damaged) must not stall
/// a whole batch: it is reported and treated as absent.
fn parse_or_log(
    d: Option<String>,
    s: Option<String>,
    e: Option<String>,
    clicks: crate::content::Clicks,
) -> Option<Record> {
    parse_record(d, s, e, clicks).unwrap_or_else(|err| {
        tracing::error!(error = %err, "Unreadable message record; skipping it.");
        None
    })
}

/// A stream entry id's (ms, sequence), for ordering entries of several streams.
/// A dead-letter queue entry of partition `p`.
pub(crate) fn dead_letter(p: u16, e: &StreamId) -> Option<crate::operator::DeadLetter> {
    Some(crate::operator::DeadLetter {
        id: crate::operator::dead_id(p, &e.id),
        job: job_from_fields(e)?,
        reason: field_str(e, "reason").unwrap_or_default(),
    })
}

fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
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
    fn templates(&self) -> &dyn crate::content::Templates {
        self
    }

    fn links(&self) -> &dyn crate::content::Links {
        self
    }

    fn campaigns(&self) -> &dyn crate::campaigns::Campaigns {
        self
    }

    fn operator(&self) -> &dyn crate::operator::Operator {
        self
    }

    fn skip_tenants(&self, tenants: std::collections::HashSet<String>) {
        *self.skip.write().unwrap_or_else(|p| p.into_inner()) = tenants;
    }

    fn backend(&self) -> &'static str {
        if self.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn partitions(&self) -> Partitions {
        self.parts
    }

    async fn prepare(&self, tenants: &[String]) -> Result<(), StoreError> {
        self.ensure_groups(tenants).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn accept(
        &self,
        msgs: &[NewMessage],
        idem: Option<IdemWrite<'_>>,
    ) -> Result<(), StoreError> {
        // One Redis: one MULTI/EXEC, so a batch is stored whole or not at all. A
        // cluster: each partition's part atomically, then (only when all of them
        // are stored) the keys outside the partitions: client_ref history and
        // the idempotent response. A crash in between leaves the idempotency
        // key reserved (it expires within a minute) and the messages stored.
        let mut own = Batch::atomic();
        let mut outside = Batch::new();
        let now = now_ms();
        for m in msgs {
            let part = partition_of(&m.id);
            let rec = self.keys.record(&m.id);
            // A scheduled message is kept for the retention period after it is due.
            let ttl = self.retention_s + m.due_ms.map_or(0, |d| ((d - now).max(0) / 1000) as u64);
            let events = m
                .events
                .iter()
                .map(event_json)
                .collect::<Vec<_>>()
                .join("\n");
            let hset = own
                .ignored(&rec, "HSET")
                .arg(&rec)
                .arg("d")
                .arg(&m.data_json)
                .arg("s")
                .arg(m.status.as_str())
                .arg("e")
                .arg(events)
                .arg("cb")
                .arg(m.callbacks.field());
            if let Some(ctx) = m.callback_context() {
                // Copied into each callback job by `lua/transition.lua`.
                let h =
                    serde_json::to_string(&ctx).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                hset.arg("h").arg(h);
            }
            if let Some((campaign, step)) = &m.campaign {
                own.ignored(&rec, "HSET")
                    .arg(&rec)
                    .arg("cc")
                    .arg(self.keys.campaign(part, "cc", campaign))
                    .arg("cf")
                    .arg(format!("s{step}:{}", m.channel))
                    .arg("ca")
                    .arg(now);
            }
            own.ignored(&rec, "EXPIRE").arg(&rec).arg(ttl);
            let lane = Lane::Channel(m.channel);
            match (m.status, m.due_ms) {
                (Status::Scheduled, Some(due)) => {
                    let k = self.keys.scheduled(part, lane);
                    own.ignored(&k, "ZADD")
                        .arg(&k)
                        .arg(due)
                        .arg(encode_member(&Job::deliver(&m.id), &m.tenant));
                }
                (Status::Held, _) => {
                    let k = self.keys.held(part);
                    own.ignored(&k, "ZADD").arg(&k).arg(now).arg(&m.id);
                }
                // Refused before queueing: kept for status and history only.
                (Status::Rejected, _) => {}
                _ => {
                    let k = self.keys.queue(part, lane, &m.tenant);
                    own.ignored(&k, "XADD")
                        .arg(&k)
                        .arg("*")
                        .arg("j")
                        .arg(&m.id)
                        .arg("n")
                        .arg(0)
                        .arg("p")
                        .arg("");
                    let set = self.keys.tenants(part, lane);
                    own.ignored(&set, "SADD").arg(&set).arg(&m.tenant);
                    self.note_stream(lane, part, &m.tenant);
                }
            }
            let to = self
                .keys
                .history(part, &m.tenant, &HistoryKey::To(m.to.clone()));
            own.ignored(&to, "ZADD").arg(&to).arg(0).arg(&m.id);
            own.ignored(&to, "EXPIRE").arg(&to).arg(ttl);
            if let Some(r) = &m.client_ref {
                let k = self
                    .keys
                    .history(part, &m.tenant, &HistoryKey::ClientRef(r.clone()));
                let b = if self.is_cluster() {
                    &mut outside
                } else {
                    &mut own
                };
                b.ignored(&k, "ZADD").arg(&k).arg(0).arg(&m.id);
                b.ignored(&k, "EXPIRE").arg(&k).arg(ttl);
            }
        }
        if let Some(w) = idem {
            let k = self.keys.idempotency(w.tenant, w.key);
            let b = if self.is_cluster() {
                &mut outside
            } else {
                &mut own
            };
            b.ignored(&k, "SET")
                .arg(&k)
                .arg(super::encode_idem_done(&w))
                .arg("EX")
                .arg(self.idem_ttl_s);
        }
        self.run::<()>(&own).await?;
        // The messages are stored and queued: failing now would make the
        // client send them again. What is missing is an index (client_ref
        // history) or the idempotent answer, whose reservation then expires.
        if let Err(e) = self.run::<()>(&outside).await {
            tracing::warn!(error = %e, count = msgs.len(), "Messages stored, but not their client_ref history or idempotent answer.");
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.get_many(&[id.to_string()]).await?.pop().flatten())
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut b = Batch::new();
        for id in ids {
            let k = self.keys.record(id);
            b.cmd(&k, "HMGET")
                .arg(&k)
                .arg("d")
                .arg("s")
                .arg("e")
                .arg("kc")
                .arg("kp")
                .arg("kf")
                .arg("kl");
        }
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = self.run(&b).await?;
        Ok(rows
            .into_iter()
            .map(|(d, s, e, kc, kp, kf, kl)| {
                let clicks = crate::content::Clicks {
                    clicks: kc.unwrap_or(0),
                    prefetches: kp.unwrap_or(0),
                    first_click_at: kf,
                    last_click_at: kl,
                };
                parse_or_log(d, s, e, clicks)
            })
            .collect())
    }

    async fn begin_delivery(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        // One script call per partition, all in one round trip.
        let by_part = by_partition(ids.iter().map(|id| partition_of(id)));
        let mut b = Batch::new();
        for (_, idx) in &by_part {
            let keys: Vec<String> = idx.iter().map(|&i| self.keys.record(&ids[i])).collect();
            b.script(&self.scripts.begin, &keys);
        }
        let replies: Vec<Vec<String>> = self.run(&b).await?;
        let mut out: Vec<Option<Record>> = vec![None; ids.len()];
        let some = |v: &String| (!v.is_empty()).then(|| v.clone());
        for ((_, idx), flat) in by_part.iter().zip(replies) {
            for (&i, r) in idx.iter().zip(flat.chunks_exact(3)) {
                out[i] = parse_or_log(some(&r[0]), some(&r[1]), some(&r[2]), Default::default());
            }
        }
        Ok(out)
    }

    async fn touch(
        &self,
        lane: Lane,
        consumer: &str,
        entries: &[EntryRef],
    ) -> Result<(), StoreError> {
        let mut by_stream: HashMap<(u16, &str), Vec<&str>> = HashMap::new();
        for e in entries {
            by_stream
                .entry((e.partition, &e.tenant))
                .or_default()
                .push(&e.entry);
        }
        // XCLAIM with min-idle 0 to ourselves resets the entries' idle time.
        let mut b = Batch::new();
        for ((part, tenant), ids) in by_stream {
            let q = self.keys.queue(part, lane, tenant);
            b.ignored(&q, "XCLAIM")
                .arg(&q)
                .arg(GROUP)
                .arg(consumer)
                .arg(0)
                .arg(ids)
                .arg("JUSTID");
        }
        self.run::<()>(&b).await
    }

    async fn transition(&self, id: &str, change: &Change) -> Result<Transition, StoreError> {
        self.transition_many(vec![(id.to_string(), change.clone())])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no answer for a transition".into()))
    }

    async fn transition_many(
        &self,
        items: Vec<(String, Change)>,
    ) -> Result<Vec<Transition>, StoreError> {
        // One script call per partition for all of its changes.
        let by_part = by_partition(items.iter().map(|(id, _)| partition_of(id)));
        let mut b = Batch::new();
        for (part, idx) in &by_part {
            let keys: Vec<String> = idx
                .iter()
                .flat_map(|&i| {
                    [
                        self.keys.record(&items[i].0),
                        self.keys.queue(*part, Lane::Webhook, ""),
                        self.keys.scheduled(*part, Lane::Channel(Channel::Sms)),
                    ]
                })
                .collect();
            let cmd = b.script(&self.scripts.transition, &keys);
            for &i in idx {
                let (id, change) = &items[i];
                let a = self.transition_args(id, change);
                cmd.arg(change.to.as_str())
                    .arg(a.allowed)
                    .arg(a.event)
                    .arg(a.callback)
                    .arg(a.callback_id)
                    .arg(change.part.as_deref().unwrap_or(""))
                    .arg(part_event(change)?);
            }
        }
        scatter_transitions(&by_part, self.run(&b).await?, items.len())
    }

    async fn history(
        &self,
        tenant: &str,
        key: &HistoryKey,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let max = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let part = match key {
            HistoryKey::To(to) => self.parts.of(tenant, to),
            HistoryKey::ClientRef(_) => 0,
        };
        let key = self.keys.history(part, tenant, key);
        // Drop ids of records past retention first (ULIDs sort by time), so the set
        // of a frequently contacted recipient does not grow for ever.
        let cutoff_ms = (now_ms() as u64).saturating_sub(self.retention_s * 1000);
        let cutoff = ulid::Ulid::from_parts(cutoff_ms, 0).to_string();
        let mut b = Batch::new();
        b.ignored(&key, "ZREMRANGEBYLEX")
            .arg(&key)
            .arg("-")
            .arg(format!("({cutoff}"));
        b.cmd(&key, "ZRANGE")
            .arg(&key)
            .arg(max)
            .arg("-")
            .arg("BYLEX")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let (ids,): (Vec<String>,) = self.run(&b).await?;
        Ok(ids)
    }

    async fn idem_begin(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdemBegin, StoreError> {
        let k = self.keys.idempotency(tenant, key);
        for _ in 0..3 {
            // A short reservation: if this request dies, the key frees itself quickly.
            let set: Option<String> = self
                .query(
                    redis::cmd("SET")
                        .arg(&k)
                        .arg(format!("P|{fingerprint}"))
                        .arg("NX")
                        .arg("EX")
                        .arg(60),
                )
                .await?;
            if set.is_some() {
                return Ok(IdemBegin::New);
            }
            let cur: Option<String> = self.query(redis::cmd("GET").arg(&k)).await?;
            if let Some(v) = cur {
                return parse_idem(&v);
            }
        }
        Err(StoreError::Unavailable(
            "idempotency key kept changing".into(),
        ))
    }

    async fn idem_abort(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let k = self.keys.idempotency(tenant, key);
        let mut b = Batch::new();
        b.script(&self.scripts.idem_abort, &[k]);
        let _: (i64,) = self.run(&b).await?;
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        // Every stream (a tenant's in a partition) in one read, the same share
        // from each: one tenant's backlog, or one partition's, cannot hold up
        // the others.
        let mut streams = self.claimable(lane).await?;
        let blocking = match &self.backend {
            Backend::Single { blocking, .. } => blocking.iter().find(|(l, _)| *l == lane),
            Backend::Cluster { .. } => None,
        };
        let Some((_, conn)) = blocking else {
            return self.poll_claim(lane, consumer, max, block).await;
        };
        let mut c = conn.clone();
        for _ in 0..2 {
            if streams.is_empty() {
                // No tenant has used this lane yet: look again after a while.
                tokio::time::sleep(block.min(STREAMS_FRESH)).await;
                return Ok(Vec::new());
            }
            let per = max.div_ceil(streams.len()).max(1);
            let queues: Vec<String> = streams
                .iter()
                .map(|(p, t)| self.keys.queue(*p, lane, t))
                .collect();
            // A stream that appears meanwhile is read from the next call on,
            // within STREAMS_FRESH.
            let wait = block.min(STREAMS_FRESH);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(per)
                .arg("BLOCK")
                .arg(wait.as_millis() as u64)
                .arg("STREAMS")
                .arg(&queues);
            for _ in &queues {
                cmd.arg(">");
            }
            let r: Result<Option<StreamReadReply>, RedisError> = cmd.query_async(&mut c).await;
            match r {
                Ok(reply) => {
                    let mut out = Vec::new();
                    for k in reply.map(|r| r.keys).unwrap_or_default() {
                        let Some(i) = queues.iter().position(|q| *q == k.key) else {
                            continue;
                        };
                        let (part, tenant) = &streams[i];
                        out.extend(self.leases(lane, (*part, tenant), k.ids, false).await?);
                    }
                    return Ok(out);
                }
                // A stream without its group yet (another instance's new tenant),
                // or Redis restarted without data: create them and read again.
                Err(e) if e.code() == Some("NOGROUP") => {
                    self.ensure_groups(&[]).await?;
                    // ensure_groups has just read the lists afresh.
                    streams = self.claimable(lane).await?;
                }
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
        let mut out = Vec::new();
        for (part, tenant) in self.stream_list(lane, false).await? {
            if out.len() >= max {
                break;
            }
            let cursor = (lane, part, tenant.clone());
            let start = {
                let g = self
                    .reclaim_cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                g.get(&cursor).cloned().unwrap_or_else(|| "0-0".to_string())
            };
            let q = self.keys.queue(part, lane, &tenant);
            let mut b = Batch::new();
            b.cmd(&q, "XAUTOCLAIM")
                .arg(&q)
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(start)
                .arg("COUNT")
                .arg(max - out.len());
            let reply = self.run_raw(&b).await?.pop().unwrap_or(Value::Nil);
            if is_nogroup(&reply) {
                self.ensure_groups(&[]).await?;
                return Ok(out);
            }
            let reply: StreamAutoClaimReply = parse(reply)?;
            self.reclaim_cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(cursor, reply.next_stream_id.clone());
            out.extend(
                self.leases(lane, (part, &tenant), reply.claimed, true)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn finish(&self, lease: Lease, outcome: Outcome) -> Result<Transition, StoreError> {
        self.finish_many(vec![(lease, outcome)])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no answer for a finished lease".into()))
    }

    async fn finish_many(
        &self,
        items: Vec<(Lease, Outcome)>,
    ) -> Result<Vec<Transition>, StoreError> {
        // Correlations first (outside the partitions): on one Redis in the same
        // pipeline, ahead of the scripts, which Redis runs in order; on a cluster
        // in a round trip of their own, since per-slot pipelines run side by side.
        let mut corr = Batch::new();
        let n = items.len();
        // A lease finished with nothing to record (a delivered callback, most
        // of them) is only acknowledged and deleted: XACK and XDEL of all such
        // entries of a stream in one command each, no script. Both are
        // idempotent, so the holder check the script makes does not matter.
        let mut acks: Vec<(String, Vec<String>)> = Vec::new();
        let mut steps: Vec<(u16, [String; 8], Vec<String>)> = Vec::with_capacity(n);
        let mut step_of: Vec<Option<usize>> = Vec::with_capacity(n);
        for (lease, outcome) in items {
            if let Outcome::Complete {
                change: None,
                correlation: None,
            } = outcome
            {
                let q = self.keys.queue(lease.partition, lease.lane, &lease.tenant);
                match acks.iter_mut().find(|(k, _)| *k == q) {
                    Some((_, ids)) => ids.push(lease.entry),
                    None => acks.push((q, vec![lease.entry])),
                }
                step_of.push(None);
                continue;
            }
            step_of.push(Some(steps.len()));
            let (keys, args, correlation) = self.finish_step(&lease, outcome);
            if let Some(c) = correlation {
                for pid in &c.provider_ids {
                    let k = self.keys.correlation(&c.connector, pid);
                    corr.ignored(&k, "SET")
                        .arg(&k)
                        .arg(&lease.job.id)
                        .arg("EX")
                        .arg(self.corr_ttl_s);
                }
            }
            steps.push((lease.partition, keys, args));
        }
        let mut b = if self.is_cluster() {
            self.run::<()>(&corr).await?;
            Batch::new()
        } else {
            corr
        };
        for (q, ids) in &acks {
            b.ignored(q, "XACK").arg(q).arg(GROUP).arg(ids);
            b.ignored(q, "XDEL").arg(q).arg(ids);
        }
        // One script call per partition for all of its other leases.
        let by_part = by_partition(steps.iter().map(|(part, _, _)| *part));
        for (_, idx) in &by_part {
            let keys: Vec<String> = idx.iter().flat_map(|&i| steps[i].1.clone()).collect();
            let cmd = b.script(&self.scripts.finish, &keys);
            for &i in idx {
                cmd.arg(&steps[i].2);
            }
        }
        let done = scatter_transitions(&by_part, self.run(&b).await?, steps.len())?;
        // An acknowledged lease reports as the script reports a lease without
        // a change.
        let acked = transition_result(3, "")?;
        Ok(step_of
            .into_iter()
            .map(|s| s.map_or(acked, |i| done[i]))
            .collect())
    }

    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.keys.once(key))
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn forget_seen(&self, key: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("DEL").arg(self.keys.once(key))).await
    }

    async fn promote_due(&self, lane: Lane, now: i64, max: usize) -> Result<usize, StoreError> {
        // First read what is due in every partition (one round trip), then move
        // it with one script call per partition (one more).
        let mut read = Batch::new();
        for part in self.parts.all() {
            let k = self.keys.scheduled(part, lane);
            read.cmd(&k, "ZRANGEBYSCORE")
                .arg(&k)
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(max);
        }
        let due: Vec<Vec<String>> = self.run(&read).await?;
        if due.iter().all(Vec::is_empty) {
            return Ok(0);
        }
        let event = match lane {
            Lane::Channel(_) => event_json(&Event {
                status: Status::Queued,
                at: now,
                reason: None,
                detail: None,
            }),
            Lane::Webhook => String::new(),
        };
        let mut b = Batch::new();
        let mut budget = max;
        for (part, members) in self.parts.all().zip(due) {
            if members.is_empty() || budget == 0 {
                continue;
            }
            let members = &members[..members.len().min(budget)];
            budget -= members.len();
            let mut keys = vec![
                self.keys.scheduled(part, lane),
                self.keys.tenants(part, lane),
            ];
            for m in members {
                let mut it = m.split('|').skip(1);
                let id = it.next().unwrap_or_default();
                let tenant = it.next().unwrap_or_default();
                let stream = self.keys.queue(part, lane, tenant);
                self.note_stream(lane, part, tenant);
                keys.push(stream.clone());
                keys.push(match lane {
                    Lane::Webhook => stream,
                    Lane::Channel(_) => self.keys.record(id),
                });
            }
            b.script(&self.scripts.promote, &keys)
                .arg(&event)
                .arg(members);
        }
        let moved: Vec<usize> = self.run(&b).await?;
        Ok(moved.iter().sum())
    }

    async fn correlate(
        &self,
        connector: &str,
        provider_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .correlate_many(connector, &[provider_id.to_string()])
            .await?
            .pop()
            .flatten())
    }

    async fn correlate_many(
        &self,
        connector: &str,
        provider_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        // One GET each (they live in different slots), in one round trip.
        let mut b = Batch::new();
        for id in provider_ids {
            let k = self.keys.correlation(connector, id);
            b.cmd(&k, "GET").arg(&k);
        }
        self.run(&b).await
    }

    async fn lane_stats(&self, lane: Lane, now: i64) -> Result<LaneStats, StoreError> {
        let mut b = Batch::new();
        for part in self.parts.all() {
            let s = self.keys.scheduled(part, lane);
            let d = self.keys.dead(part, lane);
            b.cmd(&s, "ZCARD").arg(&s);
            b.cmd(&d, "XLEN").arg(&d);
            b.cmd(&s, "ZCOUNT")
                .arg(&s)
                .arg("-inf")
                .arg(now + crate::DUE_SOON_MS);
        }
        let streams = self.stream_list(lane, false).await?;
        for (part, tenant) in &streams {
            let q = self.keys.queue(*part, lane, tenant);
            b.cmd(&q, "XLEN").arg(&q);
            b.cmd(&q, "XRANGE")
                .arg(&q)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let mut replies = self.run::<Vec<Value>>(&b).await?.into_iter();
        let mut stats = LaneStats::default();
        for _ in self.parts.all() {
            stats.scheduled += parse::<u64>(replies.next().unwrap_or(Value::Nil))?;
            stats.dead += parse::<u64>(replies.next().unwrap_or(Value::Nil))?;
            stats.due_soon += parse::<u64>(replies.next().unwrap_or(Value::Nil))?;
        }
        for _ in &streams {
            stats.depth += parse::<u64>(replies.next().unwrap_or(Value::Nil))?;
            let first: StreamRangeReply = parse(replies.next().unwrap_or(Value::Nil))?;
            let age = first.ids.first().map_or(0, |e| stream_age_ms(&e.id, now));
            stats.oldest_age_ms = stats.oldest_age_ms.max(age);
        }
        Ok(stats)
    }

    async fn dead_letters(
        &self,
        lane: Lane,
        max: usize,
    ) -> Result<Vec<crate::operator::DeadLetter>, StoreError> {
        let mut b = Batch::new();
        for part in self.parts.all() {
            let d = self.keys.dead(part, lane);
            b.cmd(&d, "XRANGE")
                .arg(&d)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(max);
        }
        let per_part: Vec<StreamRangeReply> = self.run(&b).await?;
        // Oldest first across partitions: stream ids are `ms-sequence`.
        let mut all: Vec<(u16, StreamId)> = self
            .parts
            .all()
            .zip(per_part)
            .flat_map(|(p, r)| r.ids.into_iter().map(move |e| (p, e)))
            .collect();
        all.sort_by_key(|(_, e)| entry_order(&e.id));
        Ok(all
            .iter()
            .filter_map(|(p, e)| dead_letter(*p, e))
            .take(max)
            .collect())
    }

    async fn suppress(&self, tenant: &str, address: &str, reason: &str) -> Result<(), StoreError> {
        self.query(
            redis::cmd("HSET")
                .arg(self.keys.suppression(tenant))
                .arg(address)
                .arg(reason),
        )
        .await
    }

    async fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .query(
                redis::cmd("HDEL")
                    .arg(self.keys.suppression(tenant))
                    .arg(address),
            )
            .await?;
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
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.suppression(tenant));
        for a in addresses {
            cmd.arg(*a);
        }
        // HMGET with one field answers a one-element array too.
        self.query(&cmd).await
    }

    async fn suppressions(
        &self,
        tenant: &str,
        max: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = self
                .query(
                    redis::cmd("HSCAN")
                        .arg(self.keys.suppression(tenant))
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(500),
                )
                .await?;
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
        // Work without a tenant queue (replies to forward): the lane's
        // tenant-less stream.
        let part = partition_of(&job.id);
        let q = self.keys.queue(part, lane, "");
        let mut b = Batch::atomic();
        b.ignored(&q, "XADD")
            .arg(&q)
            .arg("*")
            .arg("j")
            .arg(&job.id)
            .arg("n")
            .arg(job.attempt)
            .arg("p")
            .arg(job.task.encode());
        if lane != Lane::Webhook {
            let set = self.keys.tenants(part, lane);
            b.ignored(&set, "SADD").arg(&set).arg("");
            self.note_stream(lane, part, "");
        }
        self.run::<()>(&b).await
    }

    async fn counters(&self, needs: Vec<Needs>) -> Result<Vec<Counters>, StoreError> {
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        // A batch shares many counters (its country, prefixes, number blocks): each
        // distinct read goes to Redis once. Reads happen before any increment of the
        // request, so sharing changes no answer.
        let mut slot: HashMap<(&str, i64, i64), usize> = HashMap::new();
        let mut opt: HashMap<&str, usize> = HashMap::new();
        let mut b = Batch::new();
        let mut n_cmds = 0usize;
        for n in &needs {
            for r in n.reads() {
                let id = (r.key.as_str(), *r.fields.start(), *r.fields.end());
                slot.entry(id).or_insert_with(|| {
                    let key = self.keys.counter(&r.key);
                    let cmd = b.cmd(&key, "HMGET");
                    cmd.arg(&key);
                    for f in r.field_names() {
                        cmd.arg(f);
                    }
                    n_cmds += 1;
                    n_cmds - 1
                });
            }
            opt.entry(n.opt_out_key()).or_insert_with(|| {
                let key = self.keys.opt_out(n.opt_out_key()).0;
                b.cmd(&key, "EXISTS").arg(&key);
                n_cmds += 1;
                n_cmds - 1
            });
        }
        let mut replies: Vec<Value> = self.run(&b).await?;
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
        use std::collections::BTreeSet;
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
        let mut b = Batch::new();
        for name in order {
            let k = &keys[name];
            let key = self.keys.counter(name);
            for (field, by) in &k.fields {
                b.ignored(&key, "HINCRBY").arg(&key).arg(field).arg(by);
            }
            b.ignored(&key, "EXPIRE").arg(&key).arg(k.ttl);
            let stale: Vec<i64> = k
                .stale
                .iter()
                .copied()
                .filter(|s| !k.fields.iter().any(|(f, _)| f == s))
                .collect();
            if !stale.is_empty() {
                b.ignored(&key, "HDEL").arg(&key).arg(stale);
            }
        }
        self.run::<()>(&b).await
    }

    async fn reserve(&self, caps: &[&[Cap]]) -> Result<Vec<Option<usize>>, StoreError> {
        let mut answers = vec![None; caps.len()];
        // One script call per message with caps, all in one round trip: its keys
        // share the recipient's hash tag, so the call is atomic on one slot;
        // messages of one recipient run in order.
        let mut b = Batch::new();
        let mut asked = Vec::with_capacity(caps.len());
        for (i, group) in caps.iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let keys: Vec<String> = group
                .iter()
                .map(|c| self.keys.counter(&c.inc.key))
                .collect();
            let cmd = b.script(&self.scripts.cap_reserve, &keys);
            for c in group.iter() {
                cmd.arg(c.limit)
                    .arg(c.inc.by)
                    .arg(c.inc.field)
                    .arg(c.inc.ttl.as_secs().max(1))
                    .arg(*c.read.start())
                    .arg(*c.read.end())
                    .arg(c.inc.stale.start)
                    .arg(c.inc.stale.end);
            }
            asked.push(i);
        }
        if asked.is_empty() {
            return Ok(answers);
        }
        let replies = self.run_each_once(&b).await?;
        if replies.len() != asked.len() {
            return Err(StoreError::Corrupt("cap reservations: short reply".into()));
        }
        if let Some(e) = replies.iter().find_map(server_error) {
            // Some slots answered, some did not: give back what was granted,
            // so the request's 503 leaves nothing counted.
            let granted: Vec<&Cap> = asked
                .iter()
                .zip(&replies)
                .filter(|(_, r)| matches!(r, Value::Int(0)))
                .flat_map(|(&i, _)| caps[i].iter())
                .collect();
            let err = StoreError::Unavailable(format!("{e:?}"));
            if let Err(e) = self.release(&granted).await {
                tracing::warn!(error = %e, "Could not give back anti-fraud places after a failed reservation.");
            }
            return Err(err);
        }
        for (i, reply) in asked.into_iter().zip(replies) {
            // 0 = granted; n = the n-th cap (1-based) is full.
            let f: i64 = redis::from_redis_value(reply)
                .map_err(|e| StoreError::Corrupt(format!("cap reservations: {e}")))?;
            answers[i] = usize::try_from(f).ok().and_then(|n| n.checked_sub(1));
        }
        Ok(answers)
    }

    async fn release(&self, caps: &[&Cap]) -> Result<(), StoreError> {
        if caps.is_empty() {
            return Ok(());
        }
        let mut b = Batch::new();
        for c in caps {
            let key = self.keys.counter(&c.inc.key);
            b.script(&self.scripts.cap_release, std::slice::from_ref(&key))
                .arg(c.inc.field)
                .arg(c.inc.by);
        }
        let replies = self.run_each_once(&b).await?;
        if let Some(e) = replies.iter().find_map(server_error) {
            return Err(StoreError::Unavailable(format!("{e:?}")));
        }
        Ok(())
    }

    async fn set_opt_out(
        &self,
        key: &str,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let (flag, at) = self.keys.opt_out(key);
        let mut b = Batch::new();
        b.script(&self.scripts.opt_out, &[flag, at])
            .arg(if opted_out { "1" } else { "0" })
            .arg(at_ms);
        let (applied,): (i64,) = self.run(&b).await?;
        Ok(applied == 1)
    }

    async fn opted_out(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let mut b = Batch::new();
        for k in keys {
            let flag = self.keys.opt_out(k).0;
            b.cmd(&flag, "EXISTS").arg(&flag);
        }
        let v: Vec<i64> = self.run(&b).await?;
        Ok(v.into_iter().map(|n| n == 1).collect())
    }

    async fn held(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let mut b = Batch::new();
        for part in self.parts.all() {
            let k = self.keys.held(part);
            b.cmd(&k, "ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(max.max(1) as i64 - 1)
                .arg("WITHSCORES");
        }
        let per_part: Vec<Vec<(String, f64)>> = self.run(&b).await?;
        // Oldest first across partitions (score: when it was held; ids break ties).
        let mut all: Vec<(String, f64)> = per_part.into_iter().flatten().collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(all.into_iter().take(max).map(|(id, _)| id).collect())
    }

    async fn held_count(&self) -> Result<u64, StoreError> {
        let mut b = Batch::new();
        for part in self.parts.all() {
            let k = self.keys.held(part);
            b.cmd(&k, "ZCARD").arg(&k);
        }
        let counts: Vec<u64> = self.run(&b).await?;
        Ok(counts.iter().sum())
    }

    async fn decide_held(
        &self,
        id: &str,
        tenant: &str,
        change: &Change,
        due_ms: i64,
        channel: Channel,
    ) -> Result<Transition, StoreError> {
        let a = self.transition_args(id, change);
        let part = partition_of(id);
        let keys = [
            self.keys.record(id),
            self.keys.queue(part, Lane::Webhook, ""),
            self.keys.scheduled(part, Lane::Channel(channel)),
            self.keys.held(part),
        ];
        let mut b = Batch::new();
        b.script(&self.scripts.decide_held, &keys)
            .arg(change.to.as_str())
            .arg(a.allowed)
            .arg(a.event)
            .arg(a.callback)
            .arg(a.callback_id)
            .arg(id)
            .arg(due_ms)
            .arg(encode_member(&Job::deliver(id), tenant));
        let ((code, cur),): ((i64, String),) = self.run(&b).await?;
        transition_result(code, &cur)
    }

    async fn beat(&self, consumer: &str, ttl: Duration) -> Result<(), StoreError> {
        self.query(
            redis::cmd("SET")
                .arg(self.keys.alive(consumer))
                .arg(now_ms())
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64),
        )
        .await
    }

    async fn alive(&self, consumer: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .query(redis::cmd("EXISTS").arg(self.keys.alive(consumer)))
            .await?;
        Ok(n == 1)
    }

    async fn take_over_dead(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        // Who holds what, in every stream (one round trip).
        let streams = self.stream_list(lane, false).await?;
        let mut b = Batch::new();
        for (part, tenant) in &streams {
            let q = self.keys.queue(*part, lane, tenant);
            b.cmd(&q, "XINFO").arg("CONSUMERS").arg(&q).arg(GROUP);
        }
        let replies = self.run_raw(&b).await?;
        let mut holders: Vec<((u16, String), String, usize)> = Vec::new();
        for (stream, r) in streams.iter().zip(replies) {
            // A stream or group not made yet holds nothing.
            let Ok(info) = StreamInfoConsumersReply::from_redis_value(r) else {
                continue;
            };
            for k in info.consumers {
                if k.name != consumer {
                    holders.push((stream.clone(), k.name, k.pending));
                }
            }
        }
        if holders.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<&str> = holders.iter().map(|(_, n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut b = Batch::new();
        for n in &names {
            let k = self.keys.alive(n);
            b.cmd(&k, "EXISTS").arg(&k);
        }
        let alive: Vec<bool> = self.run(&b).await?;
        let alive: HashMap<&str, bool> = names.iter().copied().zip(alive).collect();
        let mut out = Vec::new();
        for ((part, tenant), name, pending) in &holders {
            if alive[name.as_str()] || out.len() >= max {
                continue;
            }
            let queue = self.keys.queue(*part, lane, tenant);
            if *pending == 0 {
                // Nothing held: forget it, so the group's list stays short. Only a
                // consumer with an empty pending list is deleted (DELCONSUMER
                // would drop its entries otherwise).
                let _: Result<i64, _> = self
                    .query(
                        redis::cmd("XGROUP")
                            .arg("DELCONSUMER")
                            .arg(&queue)
                            .arg(GROUP)
                            .arg(name),
                    )
                    .await;
                continue;
            }
            let pending: StreamPendingCountReply = self
                .query(
                    redis::cmd("XPENDING")
                        .arg(&queue)
                        .arg(GROUP)
                        .arg("-")
                        .arg("+")
                        .arg(max - out.len())
                        .arg(name),
                )
                .await?;
            let ids: Vec<String> = pending.ids.into_iter().map(|p| p.id).collect();
            if ids.is_empty() {
                continue;
            }
            let claimed: StreamClaimReply = self
                .query(
                    redis::cmd("XCLAIM")
                        .arg(&queue)
                        .arg(GROUP)
                        .arg(consumer)
                        .arg(0)
                        .arg(&ids),
                )
                .await?;
            tracing::info!(%lane, partition = part, dead = %name, count = claimed.ids.len(), "Took over the entries of an instance whose heartbeat lapsed.");
            out.extend(
                self.leases(lane, (*part, tenant), claimed.ids, true)
                    .await?,
            );
        }
        Ok(out)
    }
}

impl RedisStore {
    /// Claim without a blocking read (a cluster: one command cannot wait on
    /// streams of several slots): read every stream at once; while all are
    /// empty, look again after a pause that grows from 2 to 50 ms, until `block`
    /// is over. An idle lane costs one read per stream every 50 ms.
    async fn poll_claim(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let deadline = tokio::time::Instant::now() + block;
        let mut pause = Duration::from_millis(2);
        let mut made_groups = false;
        loop {
            let streams = self.claimable(lane).await?;
            let per = max.div_ceil(streams.len().max(1)).max(1);
            let replies = self.read_new(lane, consumer, per, &streams).await?;
            if !made_groups && replies.iter().any(is_nogroup) {
                // A stream without its group yet (a new tenant's), or Redis
                // restarted without data.
                self.ensure_groups(&[]).await?;
                made_groups = true;
                continue;
            }
            let mut out = Vec::new();
            for ((part, tenant), v) in streams.iter().zip(replies) {
                if is_nogroup(&v) {
                    continue; // made on the next empty round
                }
                if let Some(e) = server_error(&v) {
                    return Err(StoreError::Unavailable(format!("{e:?}")));
                }
                let reply: Option<StreamReadReply> = parse(v)?;
                for k in reply.map(|r| r.keys).unwrap_or_default() {
                    out.extend(self.leases(lane, (*part, tenant), k.ids, false).await?);
                }
            }
            let now = tokio::time::Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            made_groups = false;
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
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
