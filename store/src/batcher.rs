//! Group commit: concurrent callers' store operations of one kind are gathered
//! into one store call (one round trip, one script call per partition) instead
//! of one each. It saves round trips, syscalls and script overhead under load
//! and costs nothing when idle: a lone request is flushed at once, and a group
//! forms only from what arrived while earlier groups were being written.
//!
//! Each item gets its own answer. When the store call fails as a whole, every
//! item of the group gets the error (and its caller decides whether to retry).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{NewMessage, Store, StoreError};

/// Most items in one group.
const MAX_GROUP: usize = 256;
/// Groups written at once; while they are in flight, new requests queue and form the
/// next group.
const IN_FLIGHT: usize = 4;

type Reply<O> = oneshot::Sender<Result<O, String>>;
type Flush<I, O> = Arc<
    dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Result<Vec<O>, StoreError>> + Send>>
        + Send
        + Sync,
>;

/// Handle to a group-commit task for items `I` answered with `O`.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Clone + Send + 'static> Batcher<I, O> {
    /// Start the collector on the current runtime; `flush` writes one group and
    /// answers each item in order. It ends when every handle is dropped.
    pub fn new<F, Fut>(flush: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        let flush: Flush<I, O> = Arc::new(move |items| Box::pin(flush(items)));
        let (tx, rx) = mpsc::channel(MAX_GROUP * IN_FLIGHT * 4);
        tokio::spawn(collect(flush, rx));
        Batcher { tx }
    }

    /// Run one item (as part of whatever group forms).
    pub async fn run(&self, item: I) -> Result<O, StoreError> {
        let stopped = || StoreError::Unavailable("store batcher stopped".into());
        let (reply, rx) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }
}

/// The accept path's group commit: `POST /v1/messages` calls gathered into one
/// `Store::accept`. Atomicity is per group: if the write fails, every request of
/// the group is answered 503 and none of them is accepted.
pub fn accepts(store: Arc<dyn Store>) -> Batcher<NewMessage, ()> {
    Batcher::new(move |msgs: Vec<NewMessage>| {
        let store = store.clone();
        async move {
            let n = msgs.len();
            store.accept(&msgs, None).await?;
            Ok(vec![(); n])
        }
    })
}

/// Receipt lookups gathered: (connector, provider id) → message id, one
/// [`Store::correlate_many`] per connector in the group.
pub fn correlations(store: Arc<dyn Store>) -> Batcher<(String, String), Option<String>> {
    Batcher::new(move |items: Vec<(String, String)>| {
        let store = store.clone();
        async move {
            let mut out = vec![None; items.len()];
            let mut connectors: Vec<&str> = items.iter().map(|(c, _)| c.as_str()).collect();
            connectors.sort_unstable();
            connectors.dedup();
            for connector in connectors {
                let idx: Vec<usize> = (0..items.len())
                    .filter(|&i| items[i].0 == connector)
                    .collect();
                let ids: Vec<String> = idx.iter().map(|&i| items[i].1.clone()).collect();
                let found = store.correlate_many(connector, &ids).await?;
                for (i, f) in idx.into_iter().zip(found) {
                    out[i] = f;
                }
            }
            Ok(out)
        }
    })
}

async fn collect<I: Send + 'static, O: Clone + Send + 'static>(
    flush: Flush<I, O>,
    mut rx: mpsc::Receiver<(I, Reply<O>)>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let flush = flush.clone();
        tokio::spawn(async move {
            let (items, replies): (Vec<I>, Vec<Reply<O>>) = group.into_iter().unzip();
            let n = items.len();
            match flush(items).await {
                Ok(out) if out.len() == n => {
                    for (r, o) in replies.into_iter().zip(out) {
                        let _ = r.send(Ok(o));
                    }
                }
                Ok(out) => {
                    let e = format!("store answered {} of {n} items", out.len());
                    for r in replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    for r in replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
