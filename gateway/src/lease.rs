//! Finishing a lane's lease, shared by every lane worker (delivery, receipt
//! checks, callbacks): the store write that ends a lease is retried while the
//! store is down, since the work it records is already done; retries back off
//! with jitter.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::app::App;
use crate::store::{Lease, Outcome, StoreError, Transition};

/// Exponential backoff with jitter: `base · 2^attempt`, capped, then scaled by a
/// random factor in [0.5, 1] so retries of a burst spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Run a finishing store write, retrying while the store is unreachable: the work is
/// already done (the carrier has the message), so giving up would mean a duplicate
/// after reclaim. Gives up only when shutting down for good.
pub async fn finish_with_retries<F, Fut>(app: &App, op: &'static str, f: F) -> Option<Transition>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Transition, StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    let deadline = Instant::now() + app.cfg.server.shutdown_grace.max(Duration::from_secs(5));
    loop {
        match f().await {
            Ok(t) => return Some(t),
            Err(e) => {
                app.metrics.store_errors.with_label_values(&[op]).inc();
                if app.flags.shutting_down() && Instant::now() > deadline {
                    tracing::error!(op, error = %e, "Store still failing at shutdown; the lease will be reclaimed.");
                    return None;
                }
                tracing::warn!(op, error = %e, "Store write failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// End a lease as `outcome` says, retrying while the store is down
/// ([`finish_with_retries`]); `op` names the step in metrics and logs.
pub async fn finish(
    app: &App,
    op: &'static str,
    lease: &Lease,
    outcome: Outcome,
) -> Option<Transition> {
    // Through the group commit: concurrent finishes share a round trip.
    finish_with_retries(app, op, || {
        app.finisher.run((lease.clone(), outcome.clone()))
    })
    .await
}

/// Finish a lease that changes nothing (nothing to send, or sent already).
pub async fn drop_lease(app: &App, lease: &Lease) {
    finish(app, "complete", lease, Outcome::done()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 0..40 {
            let d = backoff(attempt, base, max);
            let full = base.saturating_mul(1 << attempt.min(30)).min(max);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }
}
