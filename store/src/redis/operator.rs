//! Pauses, the admin log and dead letters by hand on Redis (see
//! [`crate::operator`] for the keys).

use async_trait::async_trait;
use redis::streams::StreamRangeReply;

use super::{dead_letter, Batch, RedisStore};
use crate::operator::{split_dead_id, DeadLetter, Operator, AUDIT_KEEP};
use crate::{encode_member, Job, Lane, StoreError};

#[async_trait]
impl Operator for RedisStore {
    async fn set_pause(&self, target: &str, info: Option<&str>) -> Result<bool, StoreError> {
        let key = self.keys.pauses();
        let n: i64 = match info {
            // The first pause stands: pausing again changes nothing, not even who.
            Some(info) => {
                self.query(redis::cmd("HSETNX").arg(&key).arg(target).arg(info))
                    .await?
            }
            None => self.query(redis::cmd("HDEL").arg(&key).arg(target)).await?,
        };
        Ok(n > 0)
    }

    async fn pauses(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut v: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(self.keys.pauses()))
            .await?;
        v.sort();
        Ok(v)
    }

    async fn audit(&self, entry: &str) -> Result<(), StoreError> {
        let key = self.keys.audit();
        let mut b = Batch::atomic();
        b.ignored(&key, "LPUSH").arg(&key).arg(entry);
        b.ignored(&key, "LTRIM")
            .arg(&key)
            .arg(0)
            .arg(AUDIT_KEEP as i64 - 1);
        self.run::<()>(&b).await
    }

    async fn audit_log(&self, max: usize) -> Result<Vec<String>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.query(
            redis::cmd("LRANGE")
                .arg(self.keys.audit())
                .arg(0)
                .arg(max as i64 - 1),
        )
        .await
    }

    async fn dead_letter(&self, lane: Lane, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let Some((p, entry)) = self.dead_ref(id) else {
            return Ok(None);
        };
        let r: StreamRangeReply = self
            .query(
                redis::cmd("XRANGE")
                    .arg(self.keys.dead(p, lane))
                    .arg(entry)
                    .arg(entry),
            )
            .await?;
        Ok(r.ids.first().and_then(|e| dead_letter(p, e)))
    }

    async fn requeue_dead(
        &self,
        lane: Lane,
        id: &str,
        job: &Job,
        tenant: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let Some((p, entry)) = self.dead_ref(id) else {
            return Ok(false);
        };
        let mut b = Batch::new();
        b.script(
            &self.scripts.dead_requeue,
            &[self.keys.dead(p, lane), self.keys.scheduled(p, lane)],
        )
        .arg(entry)
        .arg(at_ms)
        .arg(encode_member(job, tenant));
        let (n,): (i64,) = self.run(&b).await?;
        Ok(n == 1)
    }

    async fn discard_dead(&self, lane: Lane, id: &str) -> Result<bool, StoreError> {
        let Some((p, entry)) = self.dead_ref(id) else {
            return Ok(false);
        };
        let n: i64 = self
            .query(redis::cmd("XDEL").arg(self.keys.dead(p, lane)).arg(entry))
            .await?;
        Ok(n > 0)
    }
}

impl RedisStore {
    /// The partition and entry of a dead letter id, when it names one of ours.
    fn dead_ref<'a>(&self, id: &'a str) -> Option<(u16, &'a str)> {
        split_dead_id(id).filter(|(p, _)| *p < self.parts.count())
    }
}
