//! Sender ids: registration check and picking a number from a pool.

use crate::hash::{splitmix64, stable_hash};
use crate::input::{Channel, Screening};
use crate::policy::{PoolStrategy, SenderPool, TenantPolicy};

/// What the message's sender resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderChoice<'a> {
    /// No sender named and no default pool: the route's default applies.
    Unspecified,
    /// This sender (the registered spelling; for e-mail the requested
    /// mailbox, whose address is registered).
    Fixed(&'a str),
    /// Pick from this pool.
    Pool(&'a SenderPool),
    /// Not registered for the tenant.
    NotRegistered,
}

/// Compares sender ids ignoring ASCII case and whitespace
/// (`"+48 500 100 200"` = `"+48500100200"`, `"Acme"` = `"ACME"`).
pub(crate) fn same_sender(a: &str, b: &str) -> bool {
    let mut x = a.chars().filter(|c| !c.is_whitespace());
    let mut y = b.chars().filter(|c| !c.is_whitespace());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => {}
            _ => return false,
        }
    }
}

/// Resolves the sender of `s` under `p`.
pub(crate) fn resolve<'a>(s: &Screening<'a>, p: &'a TenantPolicy) -> SenderChoice<'a> {
    let Some(requested) = s.sender.filter(|r| !r.trim().is_empty()) else {
        return match &p.default_pool {
            Some(name) if s.channel == Channel::Sms => p
                .sender_pools
                .iter()
                .find(|pool| &pool.name == name)
                .map_or(SenderChoice::Unspecified, SenderChoice::Pool),
            _ => SenderChoice::Unspecified,
        };
    };
    // A tenant that registers nothing may not choose a sender at all (the
    // connector's default is used): an open `from` is how impersonation
    // (`PKO-BANK`, `security@bank.pl`) gets in.
    if s.channel == Channel::Email {
        let registered = email_address(requested)
            .is_some_and(|addr| p.senders.iter().any(|r| email_sender_allows(r, &addr)));
        return if registered {
            SenderChoice::Fixed(requested)
        } else {
            SenderChoice::NotRegistered
        };
    }
    if let Some(pool) = p
        .sender_pools
        .iter()
        .find(|pool| same_sender(&pool.name, requested))
    {
        return SenderChoice::Pool(pool);
    }
    if let Some(registered) = p
        .senders
        .iter()
        .filter(|r| !r.contains('@'))
        .find(|r| same_sender(r, requested))
    {
        return SenderChoice::Fixed(registered);
    }
    for pool in &p.sender_pools {
        if let Some(n) = pool.numbers.iter().find(|n| same_sender(n, requested)) {
            return SenderChoice::Fixed(n);
        }
    }
    SenderChoice::NotRegistered
}

/// The address of an e-mail `from` (`Name <a@b.pl>` or `a@b.pl`), lower-cased.
fn email_address(from: &str) -> Option<String> {
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from,
    };
    let addr = addr.trim();
    let (local, domain) = addr.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| addr.to_ascii_lowercase())
}

/// Whether a registered sender allows the e-mail address `addr` (lower case):
/// `name@domain` allows that address, `@domain` any address at that domain
/// (not its subdomains). Entries without `@` are SMS sender ids.
fn email_sender_allows(registered: &str, addr: &str) -> bool {
    let r = registered.trim().to_ascii_lowercase();
    match r.strip_prefix('@') {
        Some(domain) => addr
            .rsplit_once('@')
            .is_some_and(|(_, d)| !domain.is_empty() && d == domain),
        None => r.contains('@') && r == addr,
    }
}

/// Picks a number from `pool` for `recipient` (normalised). `round_robin` is
/// the pool's counter value (messages sent from it so far); `seed` the
/// message's random seed.
pub(crate) fn pick<'p>(
    pool: &'p SenderPool,
    recipient: &str,
    seed: u64,
    round_robin: u64,
) -> Option<&'p str> {
    let n = pool.numbers.len();
    if n == 0 {
        return None;
    }
    let idx = match pool.strategy {
        PoolStrategy::RoundRobin => (round_robin % n as u64) as usize,
        PoolStrategy::Random => (splitmix64(seed) % n as u64) as usize,
        PoolStrategy::Sticky => {
            // Rendezvous (highest random weight) hashing.
            let mut best = 0;
            let mut best_score = 0u64;
            let r = stable_hash(&[recipient.as_bytes()]);
            for (i, number) in pool.numbers.iter().enumerate() {
                let score = splitmix64(r ^ stable_hash(&[number.as_bytes()]));
                if i == 0 || score > best_score {
                    best = i;
                    best_score = score;
                }
            }
            best
        }
    };
    pool.numbers.get(idx).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: PoolStrategy, n: usize) -> SenderPool {
        SenderPool {
            name: "p".into(),
            numbers: (0..n).map(|i| format!("+4850010020{i}")).collect(),
            strategy,
        }
    }

    #[test]
    fn same_sender_ignores_case_and_spaces() {
        assert!(same_sender("ACME", "acme"));
        assert!(same_sender("+48 500 100 200", "+48500100200"));
        assert!(!same_sender("ACME", "ACME2"));
        assert!(!same_sender("ACM", "ACME"));
    }

    #[test]
    fn round_robin_cycles() {
        let p = pool(PoolStrategy::RoundRobin, 3);
        let got: Vec<&str> = (0..4).map(|i| pick(&p, "+48601", 0, i).unwrap()).collect();
        assert_eq!(
            got,
            [&p.numbers[0], &p.numbers[1], &p.numbers[2], &p.numbers[0]]
        );
    }

    #[test]
    fn random_follows_the_seed() {
        let p = pool(PoolStrategy::Random, 5);
        assert_eq!(pick(&p, "x", 42, 0), pick(&p, "y", 42, 7));
        let distinct: std::collections::HashSet<&str> =
            (0..200).map(|s| pick(&p, "x", s, 0).unwrap()).collect();
        assert_eq!(distinct.len(), 5);
    }

    #[test]
    fn sticky_is_stable_and_spreads() {
        let p = pool(PoolStrategy::Sticky, 4);
        let a = pick(&p, "+48601000001", 1, 1).unwrap();
        for seed in 0..10 {
            assert_eq!(pick(&p, "+48601000001", seed, seed * 3).unwrap(), a);
        }
        // Pinned: the same recipient keeps its number across releases.
        let recipients: Vec<String> = (0..400).map(|i| format!("+48601{i:06}")).collect();
        let mut counts = [0usize; 4];
        for r in &recipients {
            let n = pick(&p, r, 0, 0).unwrap();
            counts[p.numbers.iter().position(|x| x == n).unwrap()] += 1;
        }
        assert!(counts.iter().all(|c| *c > 50), "{counts:?}");
        // Adding a number moves only recipients to the new number.
        let mut bigger = p.clone();
        bigger.numbers.push("+48500100299".into());
        for r in &recipients {
            let before = pick(&p, r, 0, 0).unwrap();
            let after = pick(&bigger, r, 0, 0).unwrap();
            assert!(after == before || after == "+48500100299");
        }
    }
}
