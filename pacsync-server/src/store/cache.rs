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

    /// Inserts `value`, and gives back the entries this pushed out: the
    /// caller drops them where dropping costs nothing (a parsed state takes
    /// a while to free), not inside this lock or a writer's turn.
    ///
    /// A full cache forgets its least recently used eighth at once (at
    /// least one entry): finding them is a pass over every entry, made
    /// once per eighth of the capacity rather than on every insert (which
    /// in a cache of 4,096 hashes was a pass per upload, in a lock).
    pub fn insert(&self, key: String, value: T) -> Vec<T> {
        let Ok(mut guard) = self.entries.lock() else {
            return Vec::new();
        };
        let (map, clock) = &mut *guard;
        *clock += 1;
        let mut evicted = Vec::new();
        if !map.is_empty() && map.len() >= self.capacity && !map.contains_key(&key) {
            let n = (self.capacity / 8).clamp(1, map.len());
            let mut ticks: Vec<u64> = map.values().map(|(_, used)| *used).collect();
            // Each get and insert takes its own tick, so no two entries
            // share one: exactly `n` are at or below the `n`th.
            let (_, &mut last, _) = ticks.select_nth_unstable(n - 1);
            evicted.extend(
                map.extract_if(|_, (_, used)| *used <= last)
                    .map(|(_, (v, _))| v),
            );
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
        assert_eq!(c.insert("c".into(), 3), vec![2]);
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (Some(1), None, Some(3))
        );
    }

    #[test]
    fn a_full_cache_forgets_its_least_recently_used_eighth_at_once() {
        let c = Lru::new(64);
        for i in 0..64 {
            assert!(c.insert(i.to_string(), i).is_empty());
        }
        // Used lately: the first eight are no longer the oldest.
        for i in 0..8 {
            assert_eq!(c.get(&i.to_string()), Some(i));
        }
        let mut evicted = c.insert("new".into(), 64);
        evicted.sort_unstable();
        assert_eq!(evicted, (8..16).collect::<Vec<_>>());
        // Room for seven more before the next eighth goes.
        for i in 65..72 {
            assert!(c.insert(i.to_string(), i).is_empty(), "{i}");
        }
        assert_eq!(c.insert("72".into(), 72).len(), 8);
        assert_eq!(c.get("16"), None, "the oldest eighth went next");
        assert_eq!(c.get("23"), None);
        assert_eq!((c.get("0"), c.get("24")), (Some(0), Some(24)));
        assert_eq!(c.get("new"), Some(64));
        // Replacing a key that is there pushes nothing out.
        assert!(c.insert("new".into(), 65).is_empty());
        assert_eq!(c.get("new"), Some(65));
    }
}
