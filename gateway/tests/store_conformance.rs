//! Every store backend (memory, one Redis, a Redis Cluster of three masters)
//! passes the same conformance suite; the Redis ones also share work between
//! instances and take over a dead one's.

use goniec_gateway::store::{memory::MemoryStore, redis::RedisStore};
use goniec_store::Outcome;
use goniec_testkit::conformance;
use goniec_testkit::{RedisCluster, RedisServer};

fn store_cfg(url: &str) -> goniec_config::Store {
    goniec_config::Store {
        url: url.to_string(),
        prefix: format!("conf{}", ulid::Ulid::new()),
        ..Default::default()
    }
}

#[tokio::test]
async fn memory_backend_conforms() {
    let store = MemoryStore::new(&goniec_config::Store::default());
    conformance::run(&store).await;
}

#[tokio::test]
async fn redis_backend_conforms() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let store = RedisStore::new(&store_cfg(&redis.url())).unwrap();
    store.init().await.unwrap();
    conformance::run(&store).await;
}

#[tokio::test]
async fn redis_cluster_backend_conforms() {
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    let store = RedisStore::new(&cluster.store_config()).unwrap();
    assert_eq!(goniec_store::Store::backend(&store), "redis-cluster");
    store.init().await.unwrap();
    conformance::run(&store).await;
}

#[tokio::test]
async fn redis_consumers_share_a_lane_without_overlap() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    share_a_lane(store_cfg(&redis.url())).await;
}

#[tokio::test]
async fn redis_cluster_consumers_share_a_lane_without_overlap() {
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    share_a_lane(cluster.store_config()).await;
}

/// Several stores on one Redis or cluster (several gateways) share one queue:
/// each entry goes to exactly one of them.
async fn share_a_lane(cfg: goniec_config::Store) {
    use goniec_gateway::store::{Lane, Store};
    use std::time::Duration;
    let a = RedisStore::new(&cfg).unwrap();
    let b = RedisStore::new(&cfg).unwrap();
    a.init().await.unwrap();
    // Fill through the suite's helpers: accept 50 messages via `a`.
    let msgs = conformance::sample_messages("t-share", 50);
    a.accept(&msgs, None).await.unwrap();
    let lane = Lane::Channel(goniec_config::Channel::Sms);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        for (s, name) in [(&a, "a"), (&b, "b")] {
            for l in s
                .claim(lane, name, 7, Duration::from_millis(10))
                .await
                .unwrap()
            {
                assert!(seen.insert(l.job.id.clone()), "entry delivered twice");
                s.finish(l, Outcome::done()).await.unwrap();
            }
        }
    }
    assert_eq!(seen.len(), 50);
}

#[tokio::test]
async fn redis_takes_over_a_dead_instance_at_once_and_never_a_live_one() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    take_over_the_dead(store_cfg(&redis.url())).await;
}

#[tokio::test]
async fn redis_cluster_takes_over_a_dead_instance_at_once_and_never_a_live_one() {
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    take_over_the_dead(cluster.store_config()).await;
}

/// A killed instance's entries are taken over as soon as its heartbeat lapses,
/// however recently they were claimed; a live instance is never robbed, however
/// long it holds its entries; a dead consumer holding nothing is forgotten.
async fn take_over_the_dead(cfg: goniec_config::Store) {
    use goniec_gateway::store::{Lane, Store};
    use std::time::Duration;
    let a = RedisStore::new(&cfg).unwrap();
    let b = RedisStore::new(&cfg).unwrap();
    a.init().await.unwrap();
    let msgs = conformance::sample_messages("t-takeover", 20);
    a.accept(&msgs, None).await.unwrap();
    let lane = Lane::Channel(goniec_config::Channel::Sms);
    let ttl = Duration::from_millis(400);
    a.beat("a", ttl).await.unwrap();
    b.beat("b", ttl).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        if held.len() == 20 {
            break;
        }
        let max = 20 - held.len();
        held.extend(
            a.claim(lane, "a", max, Duration::from_millis(10))
                .await
                .unwrap(),
        );
    }
    assert_eq!(held.len(), 20);
    // `a` is alive (it keeps beating), its entries long idle: not taken.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.beat("a", ttl).await.unwrap();
        b.beat("b", ttl).await.unwrap();
        assert!(b.take_over_dead(lane, "b", 100).await.unwrap().is_empty());
    }
    // `a` dies: within its heartbeat's lifetime, `b` takes every entry over.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    b.beat("b", ttl).await.unwrap();
    let taken = b.take_over_dead(lane, "b", 100).await.unwrap();
    let mut ids: Vec<&str> = taken.iter().map(|l| l.job.id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = held.iter().map(|l| l.job.id.as_str()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(taken.iter().all(|l| l.reclaimed));
    for l in &taken {
        b.finish(l.clone(), Outcome::done()).await.unwrap();
    }
    // Nothing left to take; the dead consumer, now empty, is forgotten.
    assert!(b.take_over_dead(lane, "b", 100).await.unwrap().is_empty());
    let mut c = b.raw_connection().await.unwrap();
    // In every stream of the tenant (the partitions its messages went to), only
    // the live consumer is left.
    let mut names: Vec<String> = Vec::new();
    let mut streams = 0;
    for p in 0..cfg.partitions {
        let key = b.keys().queue(p, lane, "t-takeover");
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if !exists {
            continue;
        }
        streams += 1;
        let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&key)
            .arg("workers")
            .query_async(&mut c)
            .await
            .unwrap();
        names.extend(consumers.consumers.into_iter().map(|k| k.name));
    }
    assert!(streams > 1, "20 recipients spread over several partitions");
    names.sort();
    names.dedup();
    assert_eq!(names, ["b"]);
}

/// A node that lost its script cache (restarted, or a replica promoted) answers
/// `NOSCRIPT`; the store loads its scripts and runs those calls again. The cap
/// reservations that other nodes already ran must not run twice: each message
/// still counts once (twice would refuse it as its own duplicate).
#[tokio::test]
async fn redis_cluster_reservations_count_once_after_a_node_lost_its_scripts() {
    use goniec_antifraud::{check, needs, Cap, CounterKind, Screening, TenantPolicy};
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    let store = RedisStore::new(&cluster.store_config()).unwrap();
    store.init().await.unwrap();
    let store: &dyn goniec_store::Store = &store;
    let policy = TenantPolicy::default();
    let now = jiff::Timestamp::now();
    // Twelve recipients: their hash tags spread over the three masters.
    let to: Vec<String> = (0..12).map(|i| format!("+4860123{i:04}")).collect();
    async fn caps(
        store: &dyn goniec_store::Store,
        policy: &TenantPolicy,
        to: &[String],
        text: &str,
        now: jiff::Timestamp,
    ) -> Vec<Vec<Cap>> {
        let mut all = Vec::new();
        for n in to {
            let s = Screening::new("t-flush", goniec_antifraud::Channel::Sms, n, text, now);
            let c = store.counters(vec![needs(&s, policy)]).await.unwrap();
            all.push(check(&s, policy, &c[0]).caps);
        }
        all
    }
    let first = caps(store, &policy, &to, "Pierwsze", now).await;
    let groups: Vec<&[Cap]> = first.iter().map(Vec::as_slice).collect();
    assert_eq!(store.reserve(&groups).await.unwrap(), vec![None; 12]);
    // Two of the three masters forget their scripts.
    for url in &cluster.node_urls()[..2] {
        let port = url.rsplit(':').next().unwrap();
        let out = std::process::Command::new("redis-cli")
            .args(["-p", port, "SCRIPT", "FLUSH"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
    }
    let second = caps(store, &policy, &to, "Drugie", now).await;
    let groups: Vec<&[Cap]> = second.iter().map(Vec::as_slice).collect();
    assert_eq!(store.reserve(&groups).await.unwrap(), vec![None; 12]);
    for n in &to {
        let s = Screening::new("t-flush", goniec_antifraud::Channel::Sms, n, "x", now);
        let c = store.counters(vec![needs(&s, &policy)]).await.unwrap();
        assert_eq!(
            c[0].value(CounterKind::FreqDay),
            2,
            "{n}: counted once each"
        );
    }
}
