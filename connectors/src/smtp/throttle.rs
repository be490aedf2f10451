//! Per-recipient-domain limits for the SMTP connector: at most N deliveries in
//! flight and M per second to one domain, so one large mailbox provider is not
//! flooded while mail to the others keeps flowing.
//!
//! A worker waits a little for a free slot (a smooth flow at the limit costs no
//! store round trips); past [`MAX_WAIT`] it gives the message back as
//! [`DeliveryError::Throttled`] with the time to come back, so workers are never
//! parked behind one busy domain. State exists only for domains with traffic:
//! a domain's in-flight counter goes away with its last delivery, and rate state
//! that has fully refilled is pruned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goniec_core::units::Rate;

use super::config::DomainLimit;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::DeliveryError;

/// The longest a worker waits for a domain before handing the message back.
pub const MAX_WAIT: Duration = Duration::from_millis(250);

/// Prune fully refilled per-domain rate state every this many acquisitions.
const PRUNE_EVERY: u64 = 4096;

/// The limits of one connector, by recipient domain.
pub struct DomainThrottle {
    /// Concurrency for domains without an override.
    concurrency: Option<u32>,
    /// Rate for domains without an override, one state per domain.
    rate: Option<DefaultKeyedRateLimiter<String>>,
    overrides: HashMap<String, Override>,
    /// In-flight slots of the domains that have deliveries running.
    inflight: Inflight,
    acquisitions: AtomicU64,
}

struct Override {
    concurrency: Option<u32>,
    rate: Option<DefaultDirectRateLimiter>,
}

/// The in-flight slots of each domain with deliveries running.
type Inflight = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// A held slot; dropping it frees the slot.
pub struct DomainPermit {
    slot: Option<(OwnedSemaphorePermit, String, Inflight)>,
}

impl Drop for DomainPermit {
    fn drop(&mut self) {
        if let Some((permit, domain, map)) = self.slot.take() {
            drop(permit);
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            // Only the map holds it now: no delivery runs or waits for the domain.
            if map.get(&domain).is_some_and(|s| Arc::strong_count(s) == 1) {
                map.remove(&domain);
            }
        }
    }
}

impl DomainThrottle {
    /// `None` when nothing is limited (the common case costs nothing).
    pub fn new(
        concurrency: Option<u32>,
        rate: Option<Rate>,
        overrides: &BTreeMap<String, DomainLimit>,
    ) -> Option<Self> {
        if concurrency.is_none() && rate.is_none() && overrides.is_empty() {
            return None;
        }
        let overrides = overrides
            .iter()
            .map(|(domain, l)| {
                let o = Override {
                    concurrency: l.concurrency.or(concurrency),
                    rate: l.rate.or(rate).map(|r| RateLimiter::direct(r.quota())),
                };
                (domain.to_ascii_lowercase(), o)
            })
            .collect();
        Some(DomainThrottle {
            concurrency,
            rate: rate.map(|r| RateLimiter::keyed(r.quota())),
            overrides,
            inflight: Arc::default(),
            acquisitions: AtomicU64::new(0),
        })
    }

    /// Take a slot for a delivery to `domain` (lowercase), waiting at most
    /// [`MAX_WAIT`]; otherwise `Throttled` with when to try again.
    pub async fn acquire(&self, domain: &str) -> Result<DomainPermit, DeliveryError> {
        let o = self.overrides.get(domain);
        let concurrency = o.map_or(self.concurrency, |o| o.concurrency);
        let slot = match concurrency {
            Some(n) => {
                let sem = {
                    let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    map.entry(domain.to_owned())
                        .or_insert_with(|| Arc::new(Semaphore::new(n as usize)))
                        .clone()
                };
                let permit = match tokio::time::timeout(MAX_WAIT, sem.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    // Timed out (or closed, which never happens): come back later.
                    _ => {
                        // The timed-out wait dropped our handle: the map may be the only holder.
                        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                        if map.get(domain).is_some_and(|s| Arc::strong_count(s) == 1) {
                            map.remove(domain);
                        }
                        return Err(DeliveryError::Throttled {
                            retry_after: Some(MAX_WAIT * 2),
                        });
                    }
                };
                Some((permit, domain.to_owned(), self.inflight.clone()))
            }
            None => None,
        };
        // Holding the slot from here: a rate wait must not let others overtake it.
        let permit = DomainPermit { slot };
        self.wait_rate(domain, o).await?;
        Ok(permit)
    }

    async fn wait_rate(&self, domain: &str, o: Option<&Override>) -> Result<(), DeliveryError> {
        let clock = DefaultClock::default();
        let mut waited = Duration::ZERO;
        loop {
            let check = match o {
                Some(o) => match &o.rate {
                    Some(l) => l.check(),
                    None => return Ok(()),
                },
                None => match &self.rate {
                    Some(l) => {
                        if self
                            .acquisitions
                            .fetch_add(1, Ordering::Relaxed)
                            .is_multiple_of(PRUNE_EVERY)
                        {
                            l.retain_recent();
                            l.shrink_to_fit();
                        }
                        // The keyed limiter allocates its key only for new domains.
                        l.check_key(&domain.to_owned())
                    }
                    None => return Ok(()),
                },
            };
            let wait = match check {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(clock.now()),
            };
            if waited + wait > MAX_WAIT {
                return Err(DeliveryError::Throttled {
                    retry_after: Some(wait.max(Duration::from_millis(50))),
                });
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }
}

/// The lowercase domain of an address (`Jan@Example.PL` → `example.pl`).
pub fn domain_of(address: &str) -> String {
    let addr = address.trim().trim_end_matches('>');
    addr.rsplit_once('@')
        .map_or(addr, |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, Option<u32>, Option<&str>)]) -> BTreeMap<String, DomainLimit> {
        pairs
            .iter()
            .map(|(d, c, r)| {
                let l = DomainLimit {
                    concurrency: *c,
                    rate: r.map(|r| r.parse().unwrap()),
                };
                (d.to_string(), l)
            })
            .collect()
    }

    #[test]
    fn domains_are_lowercase_and_bare() {
        assert_eq!(domain_of("Jan <jan@Example.PL>"), "example.pl");
        assert_eq!(domain_of("a@b.example."), "b.example");
    }

    #[test]
    fn nothing_limited_builds_nothing() {
        assert!(DomainThrottle::new(None, None, &BTreeMap::new()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_domain_throttles_only_itself() {
        let t =
            DomainThrottle::new(Some(2), None, &limits(&[("big.example", Some(1), None)])).unwrap();
        let a = t.acquire("big.example").await.unwrap();
        // The override allows one: the second waits MAX_WAIT, then is handed back.
        let err = t.acquire("big.example").await.err().unwrap();
        assert!(matches!(
            err,
            DeliveryError::Throttled {
                retry_after: Some(_)
            }
        ));
        // Other domains have their own slots.
        let _b1 = t.acquire("small.example").await.unwrap();
        let _b2 = t.acquire("small.example").await.unwrap();
        assert!(t.acquire("small.example").await.is_err());
        drop(a);
        let _a2 = t.acquire("big.example").await.unwrap();
    }

    #[tokio::test]
    async fn idle_domains_leave_no_state() {
        let t = DomainThrottle::new(Some(3), None, &BTreeMap::new()).unwrap();
        let p = t.acquire("x.example").await.unwrap();
        assert_eq!(t.inflight.lock().unwrap().len(), 1);
        drop(p);
        assert!(t.inflight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_rate_past_its_burst_is_handed_back() {
        let t =
            DomainThrottle::new(None, Some("2/min".parse().unwrap()), &BTreeMap::new()).unwrap();
        t.acquire("r.example").await.unwrap();
        t.acquire("r.example").await.unwrap();
        // The next cell is 30 s away: far past MAX_WAIT, so no waiting at all.
        match t.acquire("r.example").await.err().unwrap() {
            DeliveryError::Throttled {
                retry_after: Some(d),
            } => {
                assert!(d > Duration::from_secs(20), "{d:?}")
            }
            e => panic!("{e:?}"),
        }
        // Another domain has its own budget.
        t.acquire("other.example").await.unwrap();
    }
}
