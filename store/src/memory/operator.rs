//! Pauses, the admin log and dead letters by hand, in memory.

use async_trait::async_trait;

use super::MemoryStore;
use crate::operator::{DeadLetter, Operator, AUDIT_KEEP};
use crate::{Job, Lane, StoreError};

#[async_trait]
impl Operator for MemoryStore {
    async fn set_pause(&self, target: &str, info: Option<&str>) -> Result<bool, StoreError> {
        let mut g = self.lock();
        Ok(match info {
            // The first pause stands: pausing again changes nothing, not even who.
            Some(info) => match g.pauses.entry(target.to_string()) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(info.to_string());
                    true
                }
                std::collections::btree_map::Entry::Occupied(_) => false,
            },
            None => g.pauses.remove(target).is_some(),
        })
    }

    async fn pauses(&self) -> Result<Vec<(String, String)>, StoreError> {
        let g = self.lock();
        Ok(g.pauses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn audit(&self, entry: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.audit.push_front(entry.to_string());
        g.audit.truncate(AUDIT_KEEP);
        Ok(())
    }

    async fn audit_log(&self, max: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().audit.iter().take(max).cloned().collect())
    }

    async fn dead_letter(&self, lane: Lane, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let g = self.lock();
        Ok(g.lanes
            .get(&lane)
            .and_then(|st| st.dead.iter().find(|d| d.id == id).cloned()))
    }

    async fn requeue_dead(
        &self,
        lane: Lane,
        id: &str,
        job: &Job,
        tenant: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        {
            let mut g = self.lock();
            let Some(st) = g.lanes.get_mut(&lane) else {
                return Ok(false);
            };
            let Some(i) = st.dead.iter().position(|d| d.id == id) else {
                return Ok(false);
            };
            st.dead.remove(i);
            g.schedule(lane, tenant, at_ms, job.clone());
        }
        self.wake(lane);
        Ok(true)
    }

    async fn discard_dead(&self, lane: Lane, id: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let Some(st) = g.lanes.get_mut(&lane) else {
            return Ok(false);
        };
        let before = st.dead.len();
        st.dead.retain(|d| d.id != id);
        Ok(st.dead.len() < before)
    }
}
