//! Templates, links and clicks in memory.

use async_trait::async_trait;

use super::MemoryStore;
use crate::content::{Click, ClickKind, ClickRecorded, Link, Links, StoredTemplate, Templates};
use crate::model::Event;
use crate::{Callbacks, Job, Lane, StoreError, Task};

#[async_trait]
impl Templates for MemoryStore {
    async fn put_template(&self, tenant: &str, id: &str, doc: &str) -> Result<u32, StoreError> {
        let mut g = self.lock();
        let versions = g
            .templates
            .entry((tenant.to_string(), id.to_string()))
            .or_default();
        versions.push(doc.to_string());
        Ok(versions.len() as u32)
    }

    async fn template(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StoreError> {
        let g = self.lock();
        let Some(versions) = g.templates.get(&(tenant.to_string(), id.to_string())) else {
            return Ok(None);
        };
        let latest = versions.len() as u32;
        let version = version.unwrap_or(latest);
        Ok(version
            .checked_sub(1)
            .and_then(|i| versions.get(i as usize))
            .map(|doc| StoredTemplate {
                id: id.to_string(),
                version,
                latest,
                doc: doc.clone(),
            }))
    }

    async fn template_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        let mut ids: Vec<String> = g
            .templates
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn delete_template(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        Ok(g.templates
            .remove(&(tenant.to_string(), id.to_string()))
            .is_some())
    }
}

#[async_trait]
impl Links for MemoryStore {
    async fn put_links(&self, links: &[Link]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for l in links {
            g.links.insert(l.code.clone(), l.clone());
        }
        Ok(())
    }

    async fn find_links(
        &self,
        codes: &[String],
        now_ms: i64,
    ) -> Result<Vec<Option<Link>>, StoreError> {
        let mut g = self.lock();
        Ok(codes
            .iter()
            .map(|code| match g.links.get(code) {
                Some(l) if l.expires_at > now_ms => Some(l.clone()),
                Some(_) => {
                    g.links.remove(code);
                    None
                }
                None => None,
            })
            .collect())
    }

    async fn record_clicks(&self, clicks: &[Click]) -> Result<Vec<ClickRecorded>, StoreError> {
        let mut out = Vec::with_capacity(clicks.len());
        let mut queued = false;
        {
            let mut g = self.lock();
            for c in clicks {
                let Some(rec) = g.records.get_mut(&c.message_id) else {
                    out.push(ClickRecorded::NoMessage);
                    continue;
                };
                let n = &mut rec.clicks;
                let mut first = false;
                match c.kind {
                    ClickKind::Human => {
                        n.clicks += 1;
                        first = n.clicks == 1;
                        n.first_click_at.get_or_insert(c.at);
                        n.last_click_at = Some(c.at);
                    }
                    ClickKind::Prefetch => n.prefetches += 1,
                }
                let now = *n;
                rec.events.push(Event {
                    status: rec.status,
                    at: c.at,
                    reason: Some(c.kind.as_str().to_string()),
                    detail: None,
                });
                let wants = !matches!(rec.callbacks, Callbacks::None);
                let campaign = rec.campaign.clone().filter(|_| first);
                out.push(ClickRecorded::Recorded(now));
                if let Some(c) = campaign {
                    g.count_campaign(&c, "clicked");
                }
                if let (true, Some(cb)) = (wants, &c.callback) {
                    if let Some(task) = Task::decode(cb) {
                        g.push(
                            Lane::Webhook,
                            "",
                            Job {
                                id: c.callback_id.clone(),
                                attempt: 0,
                                task,
                            },
                        );
                        queued = true;
                    }
                }
            }
        }
        if queued {
            self.wake(Lane::Webhook);
        }
        Ok(out)
    }
}
