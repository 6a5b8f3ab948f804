//! States compressed against other states ("bases").
//!
//! The machines of a fleet report states that differ from one another in a
//! few packages. Compressed alone, a state of 1,500 packages is some 23 KiB;
//! compressed with a similar state as zstd's dictionary it is about half a
//! KiB, and compressing it is about four times faster. Such a state names its
//! base in `states.base`. A base is always a state stored alone, so reading
//! any state takes at most one other row; the foreign key, and retention,
//! keep a base while a state names it.
//!
//! Each server process keeps the few bases it stored lately ([`Bases`],
//! one per database), with their dictionaries ready. A new state goes with
//! the base sharing most of its package names — when that is at least half
//! of them and the result is small — otherwise it is stored alone and,
//! once its transaction committed, becomes a base itself. A base is offered
//! for [`MAX_AGE`] only: retention removes nothing younger than a day, so
//! the base a new state names is still there when the state is inserted,
//! and the bases follow the fleet through its upgrades. Should a base have
//! gone all the same (an administrator's cleanup, another replica's
//! retention of an old one), the report's insert fails on the foreign key
//! and is done again with the state stored alone ([`Bases::forget`]).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacsync_core::state::PackageState;

use super::{StoreError, StoreResult};

/// How many bases a process keeps at hand: each, its dictionary ready,
/// takes about 1.2 MiB for states of 1,500 packages.
const KEEP: usize = 3;

/// How long a base is offered to new states.
pub const MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// Smaller contents are stored alone: there is little to gain.
const MIN_LEN: usize = 4096;

/// A state compressed against a base is kept so when at least this many
/// times smaller than its JSON (alone, states come out 5–12 times smaller).
const MIN_RATIO: usize = 16;

/// The zstd level against a base. Level 1 (what states alone use) finds
/// few of the dictionary's matches: a state of 1,500 packages that differs
/// from its base in a few came out 13 KiB at level 1, under half a KiB at
/// level 2, which took a quarter of the time of level 1 alone.
const LEVEL: i32 = 2;

/// A state stored alone that may serve as a base.
pub struct Base {
    hash: String,
    /// The hashed package names, to find the base nearest a new state.
    names: HashSet<u64, BuildHasherDefault<IdentityHasher>>,
    /// Has the base's JSON as its dictionary, made on first use: every
    /// state stored alone is a candidate, and most never serve.
    compressor: parking_lot::Mutex<Dictionary>,
    made: Instant,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base").field("hash", &self.hash).finish()
    }
}

enum Dictionary {
    /// The base's JSON.
    Json(Vec<u8>),
    Ready(zstd::bulk::Compressor<'static>),
}

impl Base {
    fn compress(&self, json: &[u8]) -> StoreResult<Vec<u8>> {
        let failed =
            |e: std::io::Error| StoreError::Other(anyhow::anyhow!("compressing a state: {e}"));
        let mut dictionary = self.compressor.lock();
        if let Dictionary::Json(base) = &*dictionary {
            *dictionary = Dictionary::Ready(
                zstd::bulk::Compressor::with_dictionary(LEVEL, base).map_err(failed)?,
            );
        }
        match &mut *dictionary {
            Dictionary::Ready(c) => c.compress(json).map_err(failed),
            Dictionary::Json(_) => unreachable!("made ready above"),
        }
    }
}

/// The names are hashed already.
#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A 64-bit key per package name (FNV-1a: short names, no adversary to
/// fear — a collision only makes a base look a little nearer).
fn name_keys(state: &PackageState) -> Vec<u64> {
    state
        .iter()
        .map(|p| {
            p.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        })
        .collect()
}

/// A state's content compressed for storing.
#[derive(Debug)]
pub struct Compressed {
    pub content: Vec<u8>,
    /// The base it was compressed against.
    pub base: Option<String>,
    /// Stored alone, it may become a base once its row is committed
    /// ([`Bases::adopt`]).
    pub candidate: Option<Arc<Base>>,
}

/// The bases a process stored lately for one database, newest first.
#[derive(Debug, Default)]
pub struct Bases {
    recent: parking_lot::Mutex<Vec<Arc<Base>>>,
}

impl Bases {
    /// Compresses `json`, the content of `state` whose hash is `hash`:
    /// against the nearest base if one is near enough, alone otherwise.
    pub fn compress(
        &self,
        hash: &str,
        state: &PackageState,
        json: &[u8],
    ) -> StoreResult<Compressed> {
        if json.len() < MIN_LEN {
            return alone(json, None);
        }
        let keys = name_keys(state);
        if let Some(base) = self.nearest(&keys) {
            let content = base.compress(json)?;
            if content.len() * MIN_RATIO <= json.len() {
                return Ok(Compressed {
                    content,
                    base: Some(base.hash.clone()),
                    candidate: None,
                });
            }
        }
        let candidate = Base {
            hash: hash.to_owned(),
            names: keys.into_iter().collect(),
            compressor: parking_lot::Mutex::new(Dictionary::Json(json.to_vec())),
            made: Instant::now(),
        };
        alone(json, Some(Arc::new(candidate)))
    }

    /// The base sharing the most package names with a state, if it shares
    /// at least half of them.
    fn nearest(&self, keys: &[u64]) -> Option<Arc<Base>> {
        let recent = self.recent.lock();
        let (shared, base) = recent
            .iter()
            .filter(|b| b.made.elapsed() < MAX_AGE)
            .map(|b| (keys.iter().filter(|k| b.names.contains(k)).count(), b))
            .max_by_key(|(shared, _)| *shared)?;
        (shared * 2 >= keys.len()).then(|| base.clone())
    }

    /// Offers a state stored alone, its row committed, to the states that
    /// come next.
    pub fn adopt(&self, base: Arc<Base>) {
        let mut recent = self.recent.lock();
        recent.retain(|b| b.hash != base.hash && b.made.elapsed() < MAX_AGE);
        recent.insert(0, base);
        recent.truncate(KEEP);
    }

    /// Stops offering a base (its row is gone).
    pub fn forget(&self, hash: &str) {
        self.recent.lock().retain(|b| b.hash != hash);
    }

    /// The hashes of the bases offered, newest first.
    pub fn offered(&self) -> Vec<String> {
        self.recent
            .lock()
            .iter()
            .filter(|b| b.made.elapsed() < MAX_AGE)
            .map(|b| b.hash.clone())
            .collect()
    }
}

/// `json` compressed alone.
pub(super) fn alone(json: &[u8], candidate: Option<Arc<Base>>) -> StoreResult<Compressed> {
    Ok(Compressed {
        content: super::content::compress_json(json)?,
        base: None,
        candidate,
    })
}

/// The JSON of a content compressed against `base` (the JSON of its base).
pub fn decompress_with(bytes: &[u8], base: &[u8]) -> StoreResult<Vec<u8>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Other(anyhow::anyhow!("stored state unreadable: {e}"))
    };
    // Written in one piece, so its frame says its size.
    let size = super::content::content_size(bytes).ok_or_else(|| unreadable(&"no content size"))?;
    zstd::bulk::Decompressor::with_dictionary(base)
        .and_then(|mut d| d.decompress(bytes, size))
        .map_err(|e| unreadable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacsync_core::package::{InstallReason, Package};

    fn state(packages: usize, bump: usize, prefix: &str) -> (String, PackageState, Vec<u8>) {
        let state: PackageState = (0..packages)
            .map(|i| Package {
                name: format!("{prefix}-{i:04}"),
                version: format!("1.{}-{}", i % 13, if i == bump { 2 } else { 1 }).into(),
                arch: "x86_64".into(),
                reason: InstallReason::Dependency,
                origin: None,
                installed_size: 1000 + i as u64,
                depends: vec![format!("{prefix}-{:04}", (i + 31) % packages)],
            })
            .collect();
        let json = serde_json::to_vec(&state).expect("json");
        (state.content_hash().to_string(), state, json)
    }

    #[test]
    fn a_state_near_a_base_is_stored_against_it_and_reads_back() {
        let bases = Bases::default();
        let (h1, s1, j1) = state(800, 1, "pkg");
        let first = bases.compress(&h1, &s1, &j1).expect("compress");
        assert_eq!(first.base, None, "nothing to compress against yet");
        let candidate = first.candidate.expect("a base to be");
        assert_eq!(
            bases.offered(),
            Vec::<String>::new(),
            "not before its commit"
        );
        bases.adopt(candidate);
        assert_eq!(bases.offered(), vec![h1.clone()]);

        let (h2, s2, j2) = state(800, 2, "pkg");
        let second = bases.compress(&h2, &s2, &j2).expect("compress");
        assert_eq!(second.base.as_deref(), Some(h1.as_str()));
        assert!(second.candidate.is_none());
        assert!(
            second.content.len() * 20 < first.content.len(),
            "{} bytes against a base, {} alone",
            second.content.len(),
            first.content.len()
        );
        let base_json = zstd::decode_all(&first.content[..]).expect("alone");
        assert_eq!(base_json, j1);
        assert_eq!(
            decompress_with(&second.content, &base_json).expect("read"),
            j2
        );
        assert_ne!(
            decompress_with(&second.content, b"another dictionary").ok(),
            Some(j2),
            "the base is needed"
        );
    }

    #[test]
    fn a_state_unlike_every_base_is_stored_alone_and_becomes_one() {
        let bases = Bases::default();
        let (h1, s1, j1) = state(800, 1, "pkg");
        bases.adopt(
            bases
                .compress(&h1, &s1, &j1)
                .expect("c")
                .candidate
                .expect("base"),
        );
        let (h2, s2, j2) = state(800, 1, "other");
        let other = bases.compress(&h2, &s2, &j2).expect("compress");
        assert_eq!(other.base, None, "no package name in common");
        bases.adopt(other.candidate.expect("a base to be"));
        assert_eq!(bases.offered(), vec![h2.clone(), h1.clone()]);
        bases.forget(&h2);
        assert_eq!(bases.offered(), vec![h1]);

        let (h3, s3, j3) = state(10, 1, "pkg");
        let small = bases.compress(&h3, &s3, &j3).expect("compress");
        assert!(j3.len() < MIN_LEN);
        assert!(
            small.base.is_none() && small.candidate.is_none(),
            "too small to bother"
        );
    }

    #[test]
    fn no_more_than_a_few_bases_are_kept() {
        let bases = Bases::default();
        for i in 0..KEEP + 2 {
            let (h, s, j) = state(300, 1, &format!("set{i}"));
            bases.adopt(
                bases
                    .compress(&h, &s, &j)
                    .expect("c")
                    .candidate
                    .expect("base"),
            );
        }
        assert_eq!(bases.offered().len(), KEEP);
    }
}
