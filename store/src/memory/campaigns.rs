//! Campaigns in memory: the same batches and counters as on Redis, with
//! partitions only for batches (each runner works one partition at a time).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;

use super::MemoryStore;
use crate::campaigns::{
    day_of, time_bucket, CampaignMeta, Campaigns, DueBatch, DueItem, NewRecipient, RecipientState,
    Reject, StepDone,
};
use crate::StoreError;

#[derive(Default)]
pub(super) struct MemCampaign {
    meta: Option<CampaignMeta>,
    refs: HashMap<String, u64>,
    rejects: Vec<Reject>,
    recipients: HashMap<u64, String>,
    /// Per partition: (due ms, row, step).
    due: HashMap<u16, BTreeSet<(i64, u64, u32)>>,
    states: HashMap<u64, RecipientState>,
    events: HashMap<u64, Vec<String>>,
    /// Per partition: the open batch (number, rows and steps).
    batches: HashMap<u16, (u64, Vec<(u64, u32)>)>,
    seqs: HashMap<u16, u64>,
    pub(super) counters: BTreeMap<String, i64>,
}

impl MemCampaign {
    /// Count `f` in all and on the day of `at_ms`.
    pub(super) fn count(&mut self, f: &str, at_ms: i64) {
        *self.counters.entry(f.to_string()).or_insert(0) += 1;
        *self
            .counters
            .entry(format!("{f}:d{}", day_of(at_ms)))
            .or_insert(0) += 1;
    }

    fn is_due(&self, row: u64) -> bool {
        self.due
            .values()
            .any(|d| d.iter().any(|(_, r, _)| *r == row))
    }
}

#[async_trait]
impl Campaigns for MemoryStore {
    async fn create_campaign(&self, c: &CampaignMeta) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let e = g.campaigns.entry(c.id.clone()).or_default();
        if e.meta.is_some() {
            return Ok(false);
        }
        e.meta = Some(c.clone());
        Ok(true)
    }

    async fn campaign(&self, tenant: &str, id: &str) -> Result<Option<CampaignMeta>, StoreError> {
        let g = self.lock();
        Ok(g.campaigns
            .get(id)
            .and_then(|c| c.meta.clone())
            .filter(|m| m.tenant == tenant))
    }

    async fn campaign_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        let mut v: Vec<String> = g
            .campaigns
            .values()
            .filter_map(|c| c.meta.as_ref())
            .filter(|m| m.tenant == tenant)
            .map(|m| m.id.clone())
            .collect();
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
        let mut g = self.lock();
        let Some(m) = g
            .campaigns
            .get_mut(id)
            .and_then(|c| c.meta.as_mut())
            .filter(|m| m.tenant == tenant)
        else {
            return Ok(None);
        };
        let prev = m.state.clone();
        if from.contains(&prev.as_str()) {
            m.state = to.to_string();
        }
        Ok(Some(prev))
    }

    async fn active_campaigns(&self) -> Result<Vec<(String, String)>, StoreError> {
        let g = self.lock();
        let mut v: Vec<(String, String)> = g
            .campaigns
            .values()
            .filter_map(|c| c.meta.as_ref())
            .filter(|m| m.state == "running")
            .map(|m| (m.tenant.clone(), m.id.clone()))
            .collect();
        v.sort();
        Ok(v)
    }

    async fn add_recipients(
        &self,
        id: &str,
        rows: &[NewRecipient],
        rejects: &[Reject],
        read: u64,
    ) -> Result<(), StoreError> {
        let parts = self.parts;
        let mut g = self.lock();
        let c = g.campaigns.entry(id.to_string()).or_default();
        for r in rows {
            if let Some(cr) = &r.client_ref {
                c.refs.insert(cr.clone(), r.row);
            }
            if c.states.contains_key(&r.row) || c.is_due(r.row) {
                continue;
            }
            c.recipients.insert(r.row, r.data.clone());
            let p = parts.of(id, &r.row.to_string());
            c.due.entry(p).or_default().insert((r.due_ms, r.row, 0));
        }
        c.rejects.extend(rejects.iter().cloned());
        if let Some(m) = c.meta.as_mut() {
            m.rows = m.rows.max(read);
            m.rejected += rejects.len() as u64;
        }
        Ok(())
    }

    async fn rejects(&self, id: &str, offset: u64, max: u64) -> Result<Vec<Reject>, StoreError> {
        let g = self.lock();
        Ok(g.campaigns
            .get(id)
            .map(|c| {
                c.rejects
                    .iter()
                    .skip(offset as usize)
                    .take(max as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn begin_batch(
        &self,
        id: &str,
        p: u16,
        now_ms: i64,
        max: usize,
    ) -> Result<Option<DueBatch>, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(id) else {
            return Ok(None);
        };
        if !c.batches.contains_key(&p) {
            let due: Vec<(u64, u32)> = c
                .due
                .get(&p)
                .map(|d| {
                    d.iter()
                        .take_while(|(t, _, _)| *t <= now_ms)
                        .take(max)
                        .map(|(_, r, s)| (*r, *s))
                        .collect()
                })
                .unwrap_or_default();
            if due.is_empty() {
                return Ok(None);
            }
            let seq = c.seqs.entry(p).or_insert(0);
            *seq += 1;
            c.batches.insert(p, (*seq, due));
        }
        let (seq, due) = c.batches[&p].clone();
        let items = due
            .into_iter()
            .map(|(row, step)| DueItem {
                row,
                step,
                recipient: c.recipients.get(&row).cloned().unwrap_or_default(),
                state: c.states.get(&row).cloned().unwrap_or_default(),
                events: c.events.get(&row).cloned().unwrap_or_default(),
            })
            .collect();
        Ok(Some(DueBatch { seq, items }))
    }

    async fn commit_batch(
        &self,
        id: &str,
        p: u16,
        seq: u64,
        done: &[StepDone],
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(id) else {
            return Ok(false);
        };
        if c.batches.get(&p).map(|b| b.0) != Some(seq) {
            return Ok(false);
        }
        c.batches.remove(&p);
        let due = c.due.entry(p).or_default();
        for d in done {
            due.retain(|(_, r, s)| !(*r == d.row && *s == d.step));
            if let Some((step, at)) = d.next {
                due.insert((at, d.row, step));
            }
        }
        for d in done {
            c.states.insert(d.row, d.state.clone());
            for f in &d.counts {
                *c.counters.entry(f.clone()).or_insert(0) += 1;
            }
        }
        Ok(true)
    }

    async fn recipient_event(
        &self,
        id: &str,
        client_ref: &str,
        event: &str,
        at_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(id) else {
            return Ok(None);
        };
        let Some(&row) = c.refs.get(client_ref) else {
            return Ok(None);
        };
        let evs = c.events.entry(row).or_default();
        if evs.iter().any(|e| e == event) {
            return Ok(Some(false));
        }
        evs.push(event.to_string());
        let f = format!("ev:{event}");
        c.count(&f, at_ms);
        if let Some(first) = c.states.get(&row).and_then(|s| s.first_at) {
            let b = time_bucket((at_ms - first).max(0) as f64 / 1000.0);
            *c.counters.entry(format!("{f}:t{b}")).or_insert(0) += 1;
        }
        Ok(Some(true))
    }

    async fn pending(&self, id: &str) -> Result<u64, StoreError> {
        let g = self.lock();
        Ok(g.campaigns
            .get(id)
            .map(|c| c.due.values().map(|d| d.len() as u64).sum::<u64>() + c.batches.len() as u64)
            .unwrap_or(0))
    }

    async fn drop_due(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(id) else {
            return Ok(Vec::new());
        };
        c.due.clear();
        c.batches.clear();
        Ok(c.states
            .values()
            .filter_map(|s| s.messages.iter().flatten().last().cloned())
            .collect())
    }

    async fn campaign_counters(&self, id: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let g = self.lock();
        Ok(g.campaigns
            .get(id)
            .map(|c| c.counters.clone())
            .unwrap_or_default())
    }
}
