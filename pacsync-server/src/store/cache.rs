//! Small in-memory caches of what never changes once stored: parsed
//! contents by their content hash, and a machine's drift from a target
//! under a policy. Most machines share states and targets, so a report
//! rarely has to decompress and parse 1,500 packages or plan again.
//!
//! Keys are content hashes (or hashes of everything a result depends on),
//! so an entry can never go stale: the caches are process-wide and shared
//! by every store in the process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use pacsync_core::state::{PackageState, TargetState};
use pacsync_core::status::Drift;

/// Entries with the tick of their last use, and the clock.
type Entries<T> = (HashMap<String, (T, u64)>, u64);

/// A bounded map that forgets the least recently used entry.
#[derive(Debug)]
pub struct Lru<T> {
    capacity: usize,
    entries: Mutex<Entries<T>>,
}

impl<T: Clone> Lru<T> {
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            entries: Mutex::new((HashMap::new(), 0)),
        }
    }

    pub fn get(&self, key: &str) -> Option<T> {
        let mut guard = self.entries.lock().ok()?;
        let (map, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        map.get_mut(key).map(|(v, used)| {
            *used = now;
            v.clone()
        })
    }

    /// Inserts `value`, and gives back the entry this pushed out: the caller
    /// drops it where dropping costs nothing (a parsed state takes a
    /// while to free), not inside this lock or a writer's turn.
    pub fn insert(&self, key: String, value: T) -> Option<T> {
        let Ok(mut guard) = self.entries.lock() else {
            return None;
        };
        let (map, clock) = &mut *guard;
        *clock += 1;
        let mut evicted = None;
        if map.len() >= self.capacity
            && !map.contains_key(&key)
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            evicted = map.remove(&oldest).map(|(v, _)| v);
        }
        map.insert(key, (value, *clock));
        evicted
    }
}

/// Parsed states: a 1,500-package state is a few hundred KiB in memory,
/// so only a handful are kept. Statuses need them only when a drift is
/// not memoized (a state new to a target); a new upload brings its own.
pub static STATES: LazyLock<Lru<Arc<PackageState>>> = LazyLock::new(|| Lru::new(6));
pub static TARGETS: LazyLock<Lru<Arc<TargetState>>> = LazyLock::new(|| Lru::new(8));
/// Hashes of states the database was seen to hold (64 bytes and a tick
/// each). A hash-only report of a state not among them is checked on a
/// read connection first, so that a state the server lacks gets its 409
/// without taking a writer's turn. Only a shortcut: retention may have
/// removed a state since, and the report's transaction checks again.
pub static KNOWN_STATES: LazyLock<Lru<()>> = LazyLock::new(|| Lru::new(4096));
/// Drift by (state hash, target and policy fingerprint): a few bytes each.
pub static DRIFTS: LazyLock<Lru<Drift>> = LazyLock::new(|| Lru::new(4096));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_least_recently_used() {
        let c = Lru::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.insert("c".into(), 3), Some(2));
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (Some(1), None, Some(3))
        );
    }
}
