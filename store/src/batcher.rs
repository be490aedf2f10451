//! Group commit for single-message submissions: concurrent `POST /v1/messages`
//! calls are gathered into one `MULTI`/`EXEC` instead of one each, which saves a
//! Redis round trip, a syscall pair and the transaction overhead per request under
//! load (and costs nothing when idle: a lone request is flushed at once).
//!
//! Atomicity is per group: if the store write fails, every request of the group
//! is answered 503 and none of them is accepted.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{NewMessage, Store, StoreError};

/// Most messages in one group.
const MAX_GROUP: usize = 256;
/// Groups written at once; while they are in flight, new requests queue and form the
/// next group.
const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<(), String>>;

/// Handle to the group-commit task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(NewMessage, Reply)>,
}

impl Batcher {
    /// Start the collector on the current runtime; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_GROUP * IN_FLIGHT * 4);
        tokio::spawn(collect(store, rx));
        Batcher { tx }
    }

    /// Store one message (as part of whatever group forms).
    pub async fn accept(&self, msg: NewMessage) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((msg, reply))
            .await
            .map_err(|_| StoreError::Unavailable("accept batcher stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("accept batcher stopped".into()))?
            .map_err(StoreError::Unavailable)
    }
}

async fn collect(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(NewMessage, Reply)>) {
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
        let store = store.clone();
        tokio::spawn(async move {
            let (msgs, replies): (Vec<NewMessage>, Vec<Reply>) = group.into_iter().unzip();
            let result = store.accept(&msgs, None).await.map_err(|e| e.to_string());
            for r in replies {
                let _ = r.send(result.clone());
            }
            drop(permit);
        });
    }
}
