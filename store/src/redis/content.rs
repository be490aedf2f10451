//! Templates, links and clicks on Redis (see [`crate::content`] for the keys).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{parse, server_error, Batch, RedisStore};
use crate::content::{Click, ClickRecorded, Clicks, Link, Links, StoredTemplate, Templates};
use crate::model::partition_of;
use crate::{Lane, StoreError};

#[async_trait]
impl Templates for RedisStore {
    async fn put_template(&self, tenant: &str, id: &str, doc: &str) -> Result<u32, StoreError> {
        let (key, ids) = self.keys.template(tenant, id);
        let mut b = Batch::new();
        b.script(&self.scripts.template_put, &[key, ids])
            .arg(id)
            .arg(doc);
        let (n,): (u32,) = self.run(&b).await?;
        Ok(n)
    }

    async fn template(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StoreError> {
        let (key, _) = self.keys.template(tenant, id);
        let latest: Option<u32> = self.query(redis::cmd("HGET").arg(&key).arg("n")).await?;
        let Some(latest) = latest else {
            return Ok(None);
        };
        let version = version.unwrap_or(latest);
        let doc: Option<String> = self
            .query(redis::cmd("HGET").arg(&key).arg(format!("v{version}")))
            .await?;
        Ok(doc.map(|doc| StoredTemplate {
            id: id.to_string(),
            version,
            latest,
            doc,
        }))
    }

    async fn template_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let (_, ids) = self.keys.template(tenant, "");
        let mut v: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(ids)).await?;
        v.sort();
        Ok(v)
    }

    async fn delete_template(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (key, ids) = self.keys.template(tenant, id);
        let mut b = Batch::atomic();
        b.cmd(&key, "DEL").arg(&key);
        b.ignored(&ids, "SREM").arg(&ids).arg(id);
        let (n,): (i64,) = self.run(&b).await?;
        Ok(n > 0)
    }
}

#[async_trait]
impl Links for RedisStore {
    async fn put_links(&self, links: &[Link]) -> Result<(), StoreError> {
        let mut b = Batch::new();
        for l in links {
            let key = self.keys.link(&l.code);
            b.ignored(&key, "HSET")
                .arg(&key)
                .arg("t")
                .arg(&l.tenant)
                .arg("m")
                .arg(&l.message_id)
                .arg("u")
                .arg(&l.target)
                .arg("x")
                .arg(l.expires_at);
            b.ignored(&key, "PEXPIREAT").arg(&key).arg(l.expires_at);
        }
        let replies = self.run_raw(&b).await?;
        if let Some(e) = replies.iter().find_map(server_error) {
            return Err(StoreError::Unavailable(format!("{e:?}")));
        }
        Ok(())
    }

    async fn find_links(
        &self,
        codes: &[String],
        now_ms: i64,
    ) -> Result<Vec<Option<Link>>, StoreError> {
        let mut b = Batch::new();
        for code in codes {
            let key = self.keys.link(code);
            b.cmd(&key, "HMGET")
                .arg(&key)
                .arg("t")
                .arg("m")
                .arg("u")
                .arg("x");
        }
        let replies: Vec<Vec<Option<String>>> = self.run(&b).await?;
        Ok(
            codes
                .iter()
                .zip(replies)
                .map(|(code, f)| {
                    let mut f = f.into_iter();
                    let (
                        Some(Some(tenant)),
                        Some(Some(message_id)),
                        Some(Some(target)),
                        Some(Some(x)),
                    ) = (f.next(), f.next(), f.next(), f.next())
                    else {
                        return None;
                    };
                    let expires_at: i64 = x.parse().ok()?;
                    (expires_at > now_ms).then(|| Link {
                        code: code.clone(),
                        tenant,
                        message_id,
                        target,
                        expires_at,
                    })
                })
                .collect(),
        )
    }

    async fn record_clicks(&self, clicks: &[Click]) -> Result<Vec<ClickRecorded>, StoreError> {
        // One script call per partition, all in one round trip.
        let mut by_part: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, c) in clicks.iter().enumerate() {
            by_part
                .entry(partition_of(&c.message_id))
                .or_default()
                .push(i);
        }
        let mut b = Batch::new();
        for (&p, idx) in &by_part {
            let mut keys = Vec::with_capacity(idx.len() * 2);
            for &i in idx {
                keys.push(self.keys.record(&clicks[i].message_id));
                keys.push(self.keys.queue(p, Lane::Webhook, ""));
            }
            let cmd = b.script(&self.scripts.click, &keys);
            for &i in idx {
                let c = &clicks[i];
                cmd.arg(c.kind.as_str())
                    .arg(c.at)
                    .arg(c.callback.as_deref().unwrap_or(""))
                    .arg(&c.callback_id);
            }
        }
        let replies = self.run_raw(&b).await?;
        let mut out = vec![ClickRecorded::NoMessage; clicks.len()];
        for ((_, idx), reply) in by_part.iter().zip(replies) {
            if let Some(e) = server_error(&reply) {
                return Err(StoreError::Unavailable(format!("{e:?}")));
            }
            let flat: Vec<i64> = parse(reply)?;
            for (k, &i) in idx.iter().enumerate() {
                let f = flat.get(k * 5..k * 5 + 5).unwrap_or(&[0; 5]);
                if f[0] == 1 {
                    out[i] = ClickRecorded::Recorded(Clicks {
                        clicks: f[1] as u64,
                        prefetches: f[2] as u64,
                        first_click_at: (f[3] > 0).then_some(f[3]),
                        last_click_at: (f[4] > 0).then_some(f[4]),
                    });
                }
            }
        }
        Ok(out)
    }
}
