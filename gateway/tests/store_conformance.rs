//! Both store backends pass the same conformance suite.

use goniec_gateway::store::{memory::MemoryStore, redis::RedisStore};
use goniec_gateway::testing::{conformance, RedisServer};

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

/// Several stores on one Redis (several gateways) share one queue: each entry
/// goes to exactly one of them.
#[tokio::test]
async fn redis_consumers_share_a_lane_without_overlap() {
    use goniec_gateway::store::{Lane, Store};
    use std::time::Duration;
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let cfg = store_cfg(&redis.url());
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
                s.complete(&l, None, None).await.unwrap();
            }
        }
    }
    assert_eq!(seen.len(), 50);
}
