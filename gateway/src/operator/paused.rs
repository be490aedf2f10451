//! The paused tenants and connectors this instance knows of, in
//! [`crate::app::App`]: read on every delivery, so a lookup is one atomic load
//! while nothing is paused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// The paused tenants and connectors this instance knows of.
#[derive(Default)]
pub struct Paused {
    /// Fast path: nothing is paused (almost always).
    any: AtomicBool,
    sets: RwLock<(HashSet<String>, HashSet<String>)>,
}

impl Paused {
    /// Whether anything is paused.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    pub fn tenant(&self, name: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.read().0.contains(name)
    }

    pub fn connector(&self, name: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.read().1.contains(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (HashSet<String>, HashSet<String>)> {
        self.sets.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set(&self, targets: impl IntoIterator<Item = String>) {
        let (mut tenants, mut connectors) = (HashSet::new(), HashSet::new());
        for t in targets {
            if let Some(n) = t.strip_prefix("tenant:") {
                tenants.insert(n.to_string());
            } else if let Some(n) = t.strip_prefix("connector:") {
                connectors.insert(n.to_string());
            }
        }
        let any = !tenants.is_empty() || !connectors.is_empty();
        *self.sets.write().unwrap_or_else(|p| p.into_inner()) = (tenants, connectors);
        self.any.store(any, Ordering::Relaxed);
    }
}
