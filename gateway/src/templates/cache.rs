//! Compiled template versions, kept per process: a version never changes once
//! stored, so it is compiled once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Template;

/// Compiled template versions, by (tenant, id, version).
#[derive(Default)]
pub struct TemplateCache {
    map: Mutex<HashMap<(String, String, u32), Arc<Template>>>,
}

/// Most versions kept compiled; past it the cache starts again.
const CACHE_MAX: usize = 1_000;

impl TemplateCache {
    pub fn get(&self, key: &(String, String, u32)) -> Option<Arc<Template>> {
        self.map.lock().ok()?.get(key).cloned()
    }

    pub fn put(&self, key: (String, String, u32), t: Arc<Template>) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            m.insert(key, t);
        }
    }

    /// Forget a template's versions (it was deleted).
    pub fn forget(&self, tenant: &str, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|(t, i, _), _| !(t == tenant && i == id));
        }
    }
}
