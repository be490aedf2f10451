//! Sliding-window counters as time buckets: which counters a check needs,
//! which bucket ids to read and to increment, how long they live, and an
//! in-memory store with exactly the same semantics.
//!
//! # Store layout
//!
//! Every counter is one hash whose fields are bucket ids (decimal strings of
//! `floor(unix_seconds / bucket_seconds)`) and whose values are counts:
//!
//! - **read** (one pipelined round trip for all of [`Needs::reads`]):
//!   `HMGET key <fields>` for the ids in [`CounterRead::fields`], summed
//!   (missing fields count 0; [`CounterRead::sum`] does it). Plus the opt-out
//!   lookup of [`Needs::opt_out_key`] (the store's own format: `EXISTS`).
//! - **record** (one pipelined round trip for all of [`Verdict::record`](crate::Verdict::record),
//!   only when the message is stored): per [`Increment`],
//!   `HINCRBY key <field> <by>`, `EXPIRE key <ttl>` and
//!   `HDEL key <stale fields>`.
//!
//! The `EXPIRE` keeps a key only as long as its newest bucket is still read,
//! so idle counters disappear by themselves. The `HDEL` of
//! [`Increment::stale`] removes buckets that slid out of the window, so a key
//! that is written all the time (a busy prefix) does not grow: the `n` ids
//! just before the read range cover every bucket that can still exist, given
//! that a key not written for its TTL has expired (see the tests of
//! [`MemoryCounters`]). With Redis ≥ 7.4 `HEXPIRE` per field would do the
//! same job.
//!
//! Bucket ids are derived from the gateway's clock (the message's `now`);
//! instances should run NTP, a few seconds of skew only move a count into a
//! neighbouring bucket.
//!
//! - **reserve** (frequency caps and duplicates, [`Cap`]): these counters are
//!   not incremented by the record step. Before the message is stored, one
//!   script per message sums each cap's read range, and only when every
//!   `sum + by <= limit` applies the increments (with their `EXPIRE` and
//!   `HDEL`), all in one atomic step on the recipient's hash-tag slot; a
//!   message whose reservation is denied is refused for the full cap's
//!   reason, and one whose request fails before its store write gives its
//!   places back (a decrement). So these limits are exact across instances
//!   and concurrent requests: the read only answers early, the reservation
//!   decides. A crash, a lost request or a failed store write after the
//!   reservation counts the message anyway: too many, never too few (a
//!   failed write may have stored some messages). The pumping thresholds compare rates and stay
//!   read-then-record: concurrent instances may each add their in-flight
//!   messages before seeing the others'.
//!
//! # Windows
//!
//! A [`Window`] is `buckets × bucket_seconds` long. A *sliding* read sums the
//! buckets from `floor((now − len) / b)` to `floor(now / b)`: `buckets + 1`
//! fields, so it counts every event of the last `len` and possibly some up to
//! one bucket older (it errs on the side of counting more). A *trailing*
//! read (pumping baselines) sums the `buckets` complete buckets before the
//! current one, so the burst being measured does not inflate its own
//! baseline.

use crate::input::Prepared;
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

/// A bucketed time window: `buckets` buckets of `bucket_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    bucket_secs: u32,
    buckets: u32,
}

impl Window {
    /// 24 hours in 1-hour buckets (frequency cap per day; pumping baseline).
    pub const DAY: Window = Window::new(3600, 24);
    /// 7 days in 1-day buckets (frequency cap per week).
    pub const WEEK: Window = Window::new(86_400, 7);

    /// `buckets` buckets of `bucket_secs` seconds (both at least 1).
    pub const fn new(bucket_secs: u32, buckets: u32) -> Window {
        Window {
            bucket_secs: if bucket_secs == 0 { 1 } else { bucket_secs },
            buckets: if buckets == 0 { 1 } else { buckets },
        }
    }

    /// About `buckets` whole-second buckets covering at least `len` (at least
    /// one second): 10 min in 10 buckets is 10 × 60 s; 5 min in 10 is 10 × 30 s.
    pub fn covering(len: Duration, buckets: u32) -> Window {
        let len = len.as_secs().max(1);
        let buckets = u64::from(buckets.max(1));
        let bucket = len.div_ceil(buckets).clamp(1, u64::from(u32::MAX));
        let count = len.div_ceil(bucket).clamp(1, u64::from(u32::MAX));
        // Both clamped to u32 above.
        Window::new(
            u32::try_from(bucket).unwrap_or(u32::MAX),
            u32::try_from(count).unwrap_or(u32::MAX),
        )
    }

    /// Bucket length in seconds.
    pub fn bucket_secs(&self) -> u32 {
        self.bucket_secs
    }

    /// Number of buckets in the window.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The window's length, `buckets × bucket_secs`.
    pub fn len(&self) -> Duration {
        Duration::from_secs(u64::from(self.bucket_secs) * u64::from(self.buckets))
    }

    /// The id of the bucket `t` falls in: `floor(unix_seconds / bucket_secs)`.
    pub fn bucket_of(&self, t: Timestamp) -> i64 {
        t.as_second().div_euclid(i64::from(self.bucket_secs))
    }

    /// Bucket ids a sliding read sums at `now`: the current one and the
    /// `buckets` before it.
    pub fn sliding(&self, now: Timestamp) -> RangeInclusive<i64> {
        let cur = self.bucket_of(now);
        cur - i64::from(self.buckets)..=cur
    }

    /// Bucket ids a trailing read sums at `now`: the `buckets` complete
    /// buckets before the current one.
    pub fn trailing(&self, now: Timestamp) -> RangeInclusive<i64> {
        let cur = self.bucket_of(now);
        cur - i64::from(self.buckets)..=cur - 1
    }

    /// How long a key must live after an increment at `now`: until the
    /// current bucket leaves both the sliding and the trailing read range,
    /// i.e. until `(bucket + 1) × bucket_secs + len`.
    pub fn ttl(&self, now: Timestamp) -> Duration {
        let b = i64::from(self.bucket_secs);
        let expire_at = (self.bucket_of(now) + 1) * b + b * i64::from(self.buckets);
        let secs = (expire_at - now.as_second()).max(1);
        Duration::from_secs(secs.unsigned_abs())
    }

    /// Bucket ids that may be deleted after an increment at `now`: the
    /// `buckets` ids just before the read ranges start.
    pub fn stale(&self, now: Timestamp) -> Range<i64> {
        let first = self.bucket_of(now) - i64::from(self.buckets);
        first - i64::from(self.buckets)..first
    }
}

/// What a counter counts. The tag from [`as_str`](Self::as_str) is the
/// second segment of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterKind {
    /// `fd`: messages from the tenant to the recipient, sliding 24 h.
    FreqDay,
    /// `fw`: messages from the tenant to the recipient, sliding 7 days.
    FreqWeek,
    /// `dup`: messages with this (tenant, recipient, text), sliding duplicate window.
    Duplicate,
    /// `pw`: the tenant's messages to the recipient's number prefix, sliding short window.
    PrefixWindow,
    /// `pb`: the same, trailing baseline window.
    PrefixBaseline,
    /// `cw`: the tenant's messages to the recipient's country, sliding short window.
    CountryWindow,
    /// `cb`: the same, trailing baseline window.
    CountryBaseline,
    /// `sb`: distinct numbers of the recipient's block (all but the last
    /// digits) first messaged within the sequential window.
    SequenceBlock,
    /// `sr`: messages to the recipient within the sequential window (tells
    /// whether this number is new to its block's count).
    SequenceRecipient,
    /// `rr`: messages sent from a round-robin pool so far (no window).
    RoundRobin,
}

impl CounterKind {
    /// The short tag used in keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            CounterKind::FreqDay => "fd",
            CounterKind::FreqWeek => "fw",
            CounterKind::Duplicate => "dup",
            CounterKind::PrefixWindow => "pw",
            CounterKind::PrefixBaseline => "pb",
            CounterKind::CountryWindow => "cw",
            CounterKind::CountryBaseline => "cb",
            CounterKind::SequenceBlock => "sb",
            CounterKind::SequenceRecipient => "sr",
            CounterKind::RoundRobin => "rr",
        }
    }
}

/// How long a round-robin position lives without use.
pub const ROUND_ROBIN_TTL: Duration = Duration::from_secs(30 * 86_400);

/// One counter to read: `HMGET key <fields>` and sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRead {
    /// What it counts.
    pub kind: CounterKind,
    /// The store key, without the store's own prefix. It contains the tenant
    /// name, the kind, the bucket size and hex digests — never a raw phone
    /// number, e-mail address or text. Format:
    /// `af:{kind}:{bucket_secs}:{tenant}:{digest or country code}`, and
    /// `af:rr:{tenant}:{pool}` for round-robin positions.
    pub key: String,
    /// The bucketing, `None` for the round-robin position (one field, `0`).
    pub window: Option<Window>,
    /// The bucket ids (hash fields) to read and sum.
    pub fields: RangeInclusive<i64>,
}

impl CounterRead {
    /// The hash fields to read, as decimal strings.
    pub fn field_names(&self) -> impl Iterator<Item = String> + '_ {
        self.fields.clone().map(|f| f.to_string())
    }

    /// Sums the values `HMGET` returned (missing fields are `None`).
    pub fn sum(&self, values: impl IntoIterator<Item = Option<u64>>) -> u64 {
        values.into_iter().flatten().fold(0u64, u64::saturating_add)
    }
}

/// One counter increment to apply when the message is stored:
/// `HINCRBY key field by`, `EXPIRE key ttl`, `HDEL key <stale>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    /// The key (as in [`CounterRead::key`]).
    pub key: String,
    /// The bucket id (hash field) to increment.
    pub field: i64,
    /// The amount (1).
    pub by: u64,
    /// Time to live of the whole key from now; refreshed by each increment.
    pub ttl: Duration,
    /// Bucket ids that slid out of every read range and may be deleted (an
    /// empty range for keys without a window).
    pub stale: Range<i64>,
}

impl Increment {
    /// The field as the decimal string stored in the hash.
    pub fn field_name(&self) -> String {
        self.field.to_string()
    }

    /// The stale fields as decimal strings, for one `HDEL`.
    pub fn stale_field_names(&self) -> impl Iterator<Item = String> + '_ {
        self.stale.clone().map(|f| f.to_string())
    }
}

/// A counter with a limit (frequency caps, duplicates): checked against the
/// limit and incremented in one atomic store step when the message is about
/// to be stored, so that instances screening at the same moment cannot both
/// pass the last free place.
///
/// [`check`](crate::check) already refused the message when the counters it
/// read were at the limit; the reservation is the authority. A message's caps
/// are reserved together, all or nothing: a store grants them when
/// `sum(read) + inc.by <= limit` holds for each, and then applies every `inc`
/// (as [`Increment`] does), else changes nothing. Their keys share the
/// recipient's hash tag, so on Redis Cluster one script on one slot does it.
/// A reservation whose message is then not stored is given back with a
/// release (decrement of `inc.field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// The counter (its [`reason`](Self::reason) is what a refused message
    /// is rejected for).
    pub kind: CounterKind,
    /// The bucket ids summed against the limit (the read's range).
    pub read: RangeInclusive<i64>,
    /// The most the summed buckets may hold, this message included.
    pub limit: u64,
    /// The increment the reservation applies.
    pub inc: Increment,
}

impl Cap {
    /// The bucket ids of [`read`](Self::read) as decimal strings.
    pub fn read_field_names(&self) -> impl Iterator<Item = String> + '_ {
        self.read.clone().map(|f| f.to_string())
    }
}

/// Everything [`check`](crate::check) needs from the store for one message:
/// returned by [`needs`](crate::needs), filled by the store into
/// [`Counters`]. It also carries what was worked out about the recipient
/// (the parsed phone number), so that the number is parsed only once.
#[derive(Debug, Clone)]
pub struct Needs {
    pub(crate) reads: Vec<CounterRead>,
    pub(crate) opt_out_key: String,
    pub(crate) prepared: Prepared,
}

impl Needs {
    /// The counters to read, in the order their sums go into [`Counters::new`].
    pub fn reads(&self) -> &[CounterRead] {
        &self.reads
    }

    /// The key under which the store may keep this recipient's opt-out from
    /// this tenant: `af:oo:{tenant}:{digest}`. The crate only uses the
    /// answer ([`Counters::new`]'s `opted_out`); a store with its own opt-out
    /// records may ignore the key.
    pub fn opt_out_key(&self) -> &str {
        &self.opt_out_key
    }

    /// The moment the buckets were computed for (the message's `now`).
    pub fn now(&self) -> Timestamp {
        self.prepared.now
    }

    /// The read for `kind`, if the policy needs it for this message.
    pub fn read(&self, kind: CounterKind) -> Option<&CounterRead> {
        self.reads.iter().find(|r| r.kind == kind)
    }
}

/// The read-side snapshot for one message: the [`Needs`] plus the summed
/// value of every read (same order) and whether the recipient opted out.
#[derive(Debug, Clone)]
pub struct Counters {
    pub(crate) needs: Needs,
    values: Vec<u64>,
    opted_out: bool,
}

/// `values` does not match the reads of the [`Needs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got} counter values for {expected} reads")]
pub struct CountersError {
    /// Number of reads in the `Needs`.
    pub expected: usize,
    /// Number of values given.
    pub got: usize,
}

impl Counters {
    /// The snapshot: `values[i]` is the sum for `needs.reads()[i]`.
    pub fn new(needs: Needs, values: Vec<u64>, opted_out: bool) -> Result<Counters, CountersError> {
        if values.len() != needs.reads.len() {
            return Err(CountersError {
                expected: needs.reads.len(),
                got: values.len(),
            });
        }
        Ok(Counters {
            needs,
            values,
            opted_out,
        })
    }

    /// A snapshot with every counter at zero and no opt-out (a first message).
    pub fn zero(needs: Needs) -> Counters {
        let values = vec![0; needs.reads.len()];
        Counters {
            needs,
            values,
            opted_out: false,
        }
    }

    /// The value read for `kind` (0 if the policy did not need it).
    pub fn value(&self, kind: CounterKind) -> u64 {
        self.needs
            .reads
            .iter()
            .position(|r| r.kind == kind)
            .map_or(0, |i| self.values[i])
    }

    /// Whether the recipient opted out of this tenant's messages.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    /// The needs this snapshot answers.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }
}

/// An in-memory counter store with the same bucket semantics as the Redis
/// layout described in the [module docs](self): hashes of bucket counters
/// with a key TTL. A plain data structure (no locking, no clock): the caller
/// passes `now` and wraps it in whatever lock it needs. Used by the tests,
/// the bench and the gateway's memory backend.
#[derive(Debug, Default, Clone)]
pub struct MemoryCounters {
    keys: HashMap<String, Entry>,
    opted_out: HashSet<String>,
    writes: u64,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    fields: BTreeMap<i64, u64>,
    /// Unix second at which the key is gone.
    expires_at: i64,
}

/// Every this many applied increments, [`MemoryCounters::apply`] sweeps
/// expired keys so that memory stays bounded.
const SWEEP_EVERY: u64 = 4096;

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sum of `read`'s fields at `now` (0 for a missing or expired key).
    pub fn read(&self, read: &CounterRead, now: Timestamp) -> u64 {
        match self.keys.get(&read.key) {
            Some(e) if e.expires_at > now.as_second() => e
                .fields
                .range(read.fields.clone())
                .fold(0u64, |acc, (_, v)| acc.saturating_add(*v)),
            _ => 0,
        }
    }

    /// Reads every counter of `needs` (at [`Needs::now`]) and the opt-out.
    pub fn snapshot(&self, needs: Needs) -> Counters {
        let now = needs.now();
        let values = needs.reads.iter().map(|r| self.read(r, now)).collect();
        let opted_out = self.opted_out.contains(needs.opt_out_key());
        Counters {
            needs,
            values,
            opted_out,
        }
    }

    /// Applies increments (a verdict's `record`) at `now`.
    pub fn apply(&mut self, record: &[Increment], now: Timestamp) {
        let now_s = now.as_second();
        for inc in record {
            let entry = self.keys.entry(inc.key.clone()).or_default();
            if entry.expires_at <= now_s {
                entry.fields.clear();
            }
            let slot = entry.fields.entry(inc.field).or_insert(0);
            *slot = slot.saturating_add(inc.by);
            for stale in inc.stale.clone() {
                entry.fields.remove(&stale);
            }
            let ttl = i64::try_from(inc.ttl.as_secs()).unwrap_or(i64::MAX / 2);
            entry.expires_at = now_s.saturating_add(ttl);
            self.writes += 1;
            if self.writes.is_multiple_of(SWEEP_EVERY) {
                self.purge_expired(now);
            }
        }
    }

    /// Reserves one message's places under its [`Cap`]s at `now`, all or
    /// nothing: when every summed read stays within its limit, applies every
    /// increment and returns `None`; else changes nothing and returns the
    /// index of the first cap that is full.
    pub fn reserve(&mut self, caps: &[Cap], now: Timestamp) -> Option<usize> {
        let full = caps.iter().position(|cap| {
            let used = match self.keys.get(&cap.inc.key) {
                Some(e) if e.expires_at > now.as_second() => e
                    .fields
                    .range(cap.read.clone())
                    .fold(0u64, |acc, (_, v)| acc.saturating_add(*v)),
                _ => 0,
            };
            used.saturating_add(cap.inc.by) > cap.limit
        });
        if full.is_none() {
            for cap in caps {
                self.apply(std::slice::from_ref(&cap.inc), now);
            }
        }
        full
    }

    /// Gives a granted reservation back: decrements its bucket (removing it
    /// at zero). A key that expired meanwhile is left alone.
    pub fn release(&mut self, cap: &Cap, now: Timestamp) {
        let Some(e) = self.keys.get_mut(&cap.inc.key) else {
            return;
        };
        if e.expires_at <= now.as_second() {
            return;
        }
        if let Some(v) = e.fields.get_mut(&cap.inc.field) {
            *v = v.saturating_sub(cap.inc.by);
            if *v == 0 {
                e.fields.remove(&cap.inc.field);
            }
        }
    }

    /// Whether an opt-out is recorded under this key.
    pub fn is_opted_out(&self, opt_out_key: &str) -> bool {
        self.opted_out.contains(opt_out_key)
    }

    /// Records or clears an opt-out under a [`Needs::opt_out_key`].
    pub fn set_opted_out(&mut self, opt_out_key: &str, opted_out: bool) {
        if opted_out {
            self.opted_out.insert(opt_out_key.to_owned());
        } else {
            self.opted_out.remove(opt_out_key);
        }
    }

    /// Drops expired keys; returns how many.
    pub fn purge_expired(&mut self, now: Timestamp) -> usize {
        let before = self.keys.len();
        let now_s = now.as_second();
        self.keys.retain(|_, e| e.expires_at > now_s);
        before - self.keys.len()
    }

    /// Number of live and not yet purged keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Number of fields stored under `key` (0 if absent); for tests of the
    /// stale-bucket clean-up.
    pub fn field_count(&self, key: &str) -> usize {
        self.keys.get(key).map_or(0, |e| e.fields.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn window_math() {
        let w = Window::new(60, 10);
        assert_eq!(w.len(), Duration::from_secs(600));
        assert_eq!(w.bucket_of(ts(0)), 0);
        assert_eq!(w.bucket_of(ts(59)), 0);
        assert_eq!(w.bucket_of(ts(60)), 1);
        assert_eq!(w.bucket_of(ts(-1)), -1);
        let now = ts(60 * 100 + 30);
        assert_eq!(w.sliding(now), 90..=100);
        assert_eq!(w.trailing(now), 90..=99);
        assert_eq!(w.stale(now), 80..90);
        // Bucket 100 is read until (100 + 1) * 60 + 600 = 6660.
        assert_eq!(w.ttl(now), Duration::from_secs(6660 - 6030));
        assert_eq!(
            Window::covering(Duration::from_secs(600), 10),
            Window::new(60, 10)
        );
        assert_eq!(
            Window::covering(Duration::from_secs(300), 10),
            Window::new(30, 10)
        );
        assert_eq!(
            Window::covering(Duration::from_secs(3600), 10),
            Window::new(360, 10)
        );
        assert_eq!(
            Window::covering(Duration::from_secs(7), 10),
            Window::new(1, 7)
        );
        assert_eq!(Window::covering(Duration::ZERO, 10), Window::new(1, 1));
        // Not a multiple: rounded up to cover the whole length.
        let odd = Window::covering(Duration::from_secs(601), 10);
        assert!(odd.len() >= Duration::from_secs(601));
        assert_eq!(Window::new(0, 0), Window::new(1, 1));
    }

    fn read_of(key: &str, w: Window, now: Timestamp) -> CounterRead {
        CounterRead {
            kind: CounterKind::PrefixWindow,
            key: key.into(),
            window: Some(w),
            fields: w.sliding(now),
        }
    }

    fn inc_of(key: &str, w: Window, now: Timestamp) -> Increment {
        Increment {
            key: key.into(),
            field: w.bucket_of(now),
            by: 1,
            ttl: w.ttl(now),
            stale: w.stale(now),
        }
    }

    #[test]
    fn sliding_window_counts_and_forgets() {
        let w = Window::new(60, 10);
        let mut m = MemoryCounters::new();
        let t0 = ts(1_000_000 * 60);
        m.apply(&[inc_of("k", w, t0)], t0);
        m.apply(
            &[inc_of("k", w, ts(t0.as_second() + 59))],
            ts(t0.as_second() + 59),
        );
        assert_eq!(m.read(&read_of("k", w, t0), t0), 2);
        // Still counted exactly 10 minutes later (the window errs long)...
        let t10 = ts(t0.as_second() + 600);
        assert_eq!(m.read(&read_of("k", w, t10), t10), 2);
        // ...and gone once the bucket is more than 10 buckets old.
        let t11 = ts(t0.as_second() + 660);
        assert_eq!(m.read(&read_of("k", w, t11), t11), 0);
        // The key expired at the same moment.
        let last = ts(t0.as_second() + 59);
        assert_eq!(
            last.as_second() + w.ttl(last).as_secs() as i64,
            t11.as_second()
        );
        assert_eq!(m.purge_expired(t11), 1);
        assert_eq!(m.key_count(), 0);
    }

    #[test]
    fn trailing_read_excludes_current_bucket() {
        let w = Window::DAY;
        let mut m = MemoryCounters::new();
        let t = ts(1_700_000_000);
        m.apply(&[inc_of("b", w, t)], t);
        let trailing = CounterRead {
            kind: CounterKind::PrefixBaseline,
            key: "b".into(),
            window: Some(w),
            fields: w.trailing(t),
        };
        assert_eq!(m.read(&trailing, t), 0);
        let next_hour = ts(t.as_second() + 3600);
        let trailing = CounterRead {
            fields: w.trailing(next_hour),
            ..trailing
        };
        assert_eq!(m.read(&trailing, next_hour), 1);
    }

    /// The stale-field clean-up keeps a constantly written key bounded, for
    /// any pattern of gaps between writes.
    #[test]
    fn stale_cleanup_bounds_fields() {
        for w in [Window::new(60, 10), Window::DAY, Window::new(30, 10)] {
            let mut m = MemoryCounters::new();
            let mut t = 1_700_000_000i64;
            let mut rng = 0x1234_5678_u64;
            let b = i64::from(w.bucket_secs());
            let n = i64::from(w.buckets());
            for _ in 0..5_000 {
                rng = crate::hash::splitmix64(rng);
                // Gaps from 0 to a bit more than the key's TTL.
                let gap = (rng % (b * (n + 2)) as u64) as i64;
                t += gap;
                let now = ts(t);
                let before = m.read(&read_of("k", w, now), now);
                m.apply(&[inc_of("k", w, now)], now);
                assert_eq!(m.read(&read_of("k", w, now), now), before + 1);
                // Only the buckets of the current read range are left.
                assert!(m.field_count("k") as i64 <= n + 1, "{w:?}");
                let e = &m.keys["k"];
                let lo = *w.sliding(now).start();
                assert!(e.fields.keys().all(|f| *f >= lo), "{w:?}: {e:?}");
            }
        }
    }

    #[test]
    fn sweep_runs_periodically() {
        let w = Window::new(1, 1);
        let mut m = MemoryCounters::new();
        for i in 0..SWEEP_EVERY as i64 {
            let now = ts(1_000_000 + i * 10);
            m.apply(&[inc_of(&format!("k{i}"), w, now)], now);
        }
        // The sweep at the last write dropped all the expired keys.
        assert_eq!(m.key_count(), 1);
    }

    #[test]
    fn sum_of_hmget_values() {
        let r = read_of("k", Window::new(60, 2), ts(0));
        assert_eq!(r.sum([Some(2), None, Some(3)]), 5);
        assert_eq!(r.field_names().collect::<Vec<_>>(), ["-2", "-1", "0"]);
        let inc = inc_of("k", Window::new(60, 2), ts(120));
        assert_eq!(inc.field_name(), "2");
        assert_eq!(inc.stale_field_names().collect::<Vec<_>>(), ["-2", "-1"]);
    }
}
