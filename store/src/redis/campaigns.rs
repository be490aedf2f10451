//! Campaigns on Redis (see [`crate::campaigns`]): a campaign's own keys share
//! the tag `{cmp:<id>}`; its recipients, due steps, batches and counters are
//! spread over the partitions, each partition's under that partition's tag.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::Value;

use super::{parse, server_error, Batch, RedisStore};
use crate::campaigns::{
    CampaignMeta, Campaigns, DueBatch, DueItem, NewRecipient, RecipientState, Reject, StepDone,
};
use crate::StoreError;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("campaign {what}"))
}

impl RedisStore {
    fn recipient_partition(&self, id: &str, row: u64) -> u16 {
        self.parts.of(id, &row.to_string())
    }

    fn check(replies: &[Value]) -> Result<(), StoreError> {
        match replies.iter().find_map(server_error) {
            Some(e) => Err(StoreError::Unavailable(format!("{e:?}"))),
            None => Ok(()),
        }
    }
}

fn meta_from(tenant_id: (&str, &str), f: &BTreeMap<String, String>) -> Option<CampaignMeta> {
    let num = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(CampaignMeta {
        tenant: f.get("t")?.clone(),
        id: tenant_id.1.to_string(),
        state: f.get("state")?.clone(),
        doc: f.get("doc")?.clone(),
        created_at: num("created") as i64,
        rows: num("rows"),
        rejected: num("rejected"),
    })
    .filter(|m| m.tenant == tenant_id.0)
}

#[async_trait]
impl Campaigns for RedisStore {
    async fn create_campaign(&self, c: &CampaignMeta) -> Result<bool, StoreError> {
        let meta = self.keys.campaign_own(&c.id, "meta");
        let created: bool = self
            .query(redis::cmd("HSETNX").arg(&meta).arg("t").arg(&c.tenant))
            .await?;
        if !created {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.ignored(&meta, "HSET")
            .arg(&meta)
            .arg("state")
            .arg(&c.state)
            .arg("doc")
            .arg(&c.doc)
            .arg("created")
            .arg(c.created_at);
        let idx = self.keys.campaign_index(Some(&c.tenant));
        b.ignored(&idx, "SADD").arg(&idx).arg(&c.id);
        Self::check(&self.run_raw(&b).await?)?;
        Ok(true)
    }

    async fn campaign(&self, tenant: &str, id: &str) -> Result<Option<CampaignMeta>, StoreError> {
        let f: BTreeMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.campaign_own(id, "meta")))
            .await?;
        Ok(meta_from((tenant, id), &f))
    }

    async fn campaign_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.campaign_index(Some(tenant))))
            .await?;
        v.sort();
        Ok(v)
    }

    async fn set_campaign_state(
        &self,
        tenant: &str,
        id: &str,
        from: &[&str],
        to: &str,
    ) -> Result<Option<String>, StoreError> {
        let meta = self.keys.campaign_own(id, "meta");
        // Compare and set in one step.
        let script = redis::Script::new(
            "local t = redis.call('HGET', KEYS[1], 't')
             if t ~= ARGV[1] then return false end
             local s = redis.call('HGET', KEYS[1], 'state')
             if string.find(ARGV[2], ',' .. s .. ',', 1, true) then
               redis.call('HSET', KEYS[1], 'state', ARGV[3])
             end
             return s",
        );
        let allowed = format!(",{},", from.join(","));
        let mut c = self.conn().await?;
        let prev: Option<String> = script
            .key(&meta)
            .arg(tenant)
            .arg(allowed)
            .arg(to)
            .invoke_async(&mut c)
            .await
            .map_err(super::unavailable)?;
        let running = self.keys.campaign_index(None);
        let member = format!("{tenant}\t{id}");
        if prev.as_deref().is_some_and(|p| from.contains(&p)) {
            let cmd = if to == "running" { "SADD" } else { "SREM" };
            let _: i64 = self
                .query(redis::cmd(cmd).arg(&running).arg(&member))
                .await?;
        }
        Ok(prev)
    }

    async fn active_campaigns(&self) -> Result<Vec<(String, String)>, StoreError> {
        let v: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.campaign_index(None)))
            .await?;
        Ok(v.into_iter()
            .filter_map(|m| {
                m.split_once('\t')
                    .map(|(t, i)| (t.to_string(), i.to_string()))
            })
            .collect())
    }

    async fn add_recipients(
        &self,
        id: &str,
        rows: &[NewRecipient],
        rejects: &[Reject],
        read: u64,
    ) -> Result<(), StoreError> {
        let mut by_part: BTreeMap<u16, Vec<&NewRecipient>> = BTreeMap::new();
        for r in rows {
            by_part
                .entry(self.recipient_partition(id, r.row))
                .or_default()
                .push(r);
        }
        let mut b = Batch::new();
        for (p, rs) in &by_part {
            let keys = [
                self.keys.campaign(*p, "cr", id),
                self.keys.campaign(*p, "cd", id),
                self.keys.campaign(*p, "cs", id),
            ];
            let cmd = b.script(&self.scripts.campaign_add, &keys);
            for r in rs {
                cmd.arg(r.row).arg(&r.data).arg(r.due_ms);
            }
        }
        let refs = self.keys.campaign_own(id, "refs");
        let with_ref: Vec<&NewRecipient> = rows.iter().filter(|r| r.client_ref.is_some()).collect();
        if !with_ref.is_empty() {
            let cmd = b.ignored(&refs, "HSET");
            cmd.arg(&refs);
            for r in with_ref {
                cmd.arg(r.client_ref.as_deref().unwrap_or_default())
                    .arg(r.row);
            }
        }
        let meta = self.keys.campaign_own(id, "meta");
        {
            let last = read;
            let script_max = "local c = tonumber(redis.call('HGET', KEYS[1], 'rows') or '0')
                 if tonumber(ARGV[1]) > c then redis.call('HSET', KEYS[1], 'rows', ARGV[1]) end
                 return 1";
            b.cmd(&meta, "EVAL")
                .arg(script_max)
                .arg(1)
                .arg(&meta)
                .arg(last);
        }
        if !rejects.is_empty() {
            let rej = self.keys.campaign_own(id, "rej");
            let cmd = b.ignored(&rej, "RPUSH");
            cmd.arg(&rej);
            for r in rejects {
                cmd.arg(serde_json::to_string(r).unwrap_or_default());
            }
            b.ignored(&meta, "HINCRBY")
                .arg(&meta)
                .arg("rejected")
                .arg(rejects.len());
        }
        Self::check(&self.run_raw(&b).await?)
    }

    async fn rejects(&self, id: &str, offset: u64, max: u64) -> Result<Vec<Reject>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let v: Vec<String> = self
            .query(
                redis::cmd("LRANGE")
                    .arg(self.keys.campaign_own(id, "rej"))
                    .arg(offset)
                    .arg(offset + max - 1),
            )
            .await?;
        v.iter()
            .map(|s| serde_json::from_str(s).map_err(|_| corrupt("reject")))
            .collect()
    }

    async fn begin_batch(
        &self,
        id: &str,
        p: u16,
        now_ms: i64,
        max: usize,
    ) -> Result<Option<DueBatch>, StoreError> {
        let keys = [
            self.keys.campaign(p, "cb", id),
            self.keys.campaign(p, "cn", id),
            self.keys.campaign(p, "cd", id),
            self.keys.campaign(p, "cr", id),
            self.keys.campaign(p, "cs", id),
            self.keys.campaign(p, "ce", id),
        ];
        let mut b = Batch::new();
        b.script(&self.scripts.campaign_begin, &keys)
            .arg(now_ms)
            .arg(max);
        let (flat,): (Vec<String>,) = self.run(&b).await?;
        let Some((seq, rest)) = flat.split_first() else {
            return Ok(None);
        };
        let seq: u64 = seq.parse().map_err(|_| corrupt("batch number"))?;
        let mut items = Vec::with_capacity(rest.len() / 4);
        for c in rest.chunks(4) {
            let [member, recipient, state, events] = c else {
                return Err(corrupt("batch"));
            };
            let (row, step) = member.split_once(':').ok_or_else(|| corrupt("member"))?;
            items.push(DueItem {
                row: row.parse().map_err(|_| corrupt("row"))?,
                step: step.parse().map_err(|_| corrupt("step"))?,
                recipient: recipient.clone(),
                state: if state.is_empty() {
                    RecipientState::default()
                } else {
                    serde_json::from_str(state).map_err(|_| corrupt("recipient state"))?
                },
                events: events
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect(),
            });
        }
        Ok(Some(DueBatch { seq, items }))
    }

    async fn commit_batch(
        &self,
        id: &str,
        p: u16,
        seq: u64,
        done: &[StepDone],
    ) -> Result<bool, StoreError> {
        let items: Vec<serde_json::Value> = done
            .iter()
            .map(|d| {
                serde_json::json!({
                    "m": format!("{}:{}", d.row, d.step),
                    "r": d.row.to_string(),
                    "s": serde_json::to_string(&d.state).unwrap_or_default(),
                    "n": d.next.map_or(String::new(), |(s, _)| format!("{}:{s}", d.row)),
                    "t": d.next.map_or(0, |(_, t)| t),
                    "c": d.counts,
                })
            })
            .collect();
        let keys = [
            self.keys.campaign(p, "cd", id),
            self.keys.campaign(p, "cs", id),
            self.keys.campaign(p, "cb", id),
            self.keys.campaign(p, "cc", id),
        ];
        let mut b = Batch::new();
        b.script(&self.scripts.campaign_commit, &keys)
            .arg(seq)
            .arg(serde_json::Value::Array(items).to_string());
        let (ok,): (i64,) = self.run(&b).await?;
        Ok(ok == 1)
    }

    async fn recipient_event(
        &self,
        id: &str,
        client_ref: &str,
        event: &str,
        at_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let row: Option<u64> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys.campaign_own(id, "refs"))
                    .arg(client_ref),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let p = self.recipient_partition(id, row);
        let keys = [
            self.keys.campaign(p, "ce", id),
            self.keys.campaign(p, "cs", id),
            self.keys.campaign(p, "cc", id),
        ];
        let mut b = Batch::new();
        b.script(&self.scripts.campaign_event, &keys)
            .arg(row)
            .arg(event)
            .arg(at_ms);
        let (n,): (i64,) = self.run(&b).await?;
        Ok(Some(n == 1))
    }

    async fn pending(&self, id: &str) -> Result<u64, StoreError> {
        let mut b = Batch::new();
        for p in self.parts.all() {
            let due = self.keys.campaign(p, "cd", id);
            b.cmd(&due, "ZCARD").arg(&due);
            let open = self.keys.campaign(p, "cb", id);
            b.cmd(&open, "EXISTS").arg(&open);
        }
        let v: Vec<u64> = self.run(&b).await?;
        Ok(v.iter().sum())
    }

    async fn drop_due(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut b = Batch::new();
        for p in self.parts.all() {
            for kind in ["cd", "cb"] {
                let k = self.keys.campaign(p, kind, id);
                b.ignored(&k, "DEL").arg(&k);
            }
            let st = self.keys.campaign(p, "cs", id);
            b.cmd(&st, "HVALS").arg(&st);
        }
        let states: Vec<Vec<String>> = self.run(&b).await?;
        Ok(states
            .into_iter()
            .flatten()
            .filter_map(|s| serde_json::from_str::<RecipientState>(&s).ok())
            .filter_map(|s| s.messages.into_iter().flatten().last())
            .collect())
    }

    async fn campaign_counters(&self, id: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut b = Batch::new();
        for p in self.parts.all() {
            let k = self.keys.campaign(p, "cc", id);
            b.cmd(&k, "HGETALL").arg(&k);
        }
        let replies = self.run_raw(&b).await?;
        let mut sum = BTreeMap::new();
        for r in replies {
            let m: BTreeMap<String, i64> = parse(r)?;
            for (k, v) in m {
                *sum.entry(k).or_insert(0) += v;
            }
        }
        Ok(sum)
    }
}
