//! The snapshot in force, swapped atomically. A call pins one `Arc<Snapshot>` at its
//! start and uses it to the end, so a swap never changes the rules under a running call.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Snapshot;

#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
}

impl Live {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot for one call.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    pub fn version(&self) -> u64 {
        self.current.load().version
    }
}
