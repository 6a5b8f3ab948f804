//! Package states made from real Arch databases: every machine starts from
//! the local database in the fixtures (132 packages a real pacman wrote)
//! plus a few hundred packages of the fixtures' sync databases, so states
//! have real names, versions, sizes and dependencies. Machines share a
//! small number of profiles, as fleets on the same mirrors do.

use std::path::Path;

use anyhow::Context as _;
use axum::body::Bytes;
use pacsync_core::package::{InstallReason, Origin, Package};
use pacsync_core::state::PackageState;

/// A small deterministic generator (xorshift64*): reproducible runs, no
/// dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// What the fixtures give: the installed base and the packages a machine
/// may add from the sync databases.
#[derive(Debug)]
pub struct Universe {
    base: Vec<Package>,
    optional: Vec<Package>,
}

impl Universe {
    pub fn load(fixtures: &Path) -> anyhow::Result<Universe> {
        let local = fixtures.join("local");
        let mut base = Vec::new();
        for entry in std::fs::read_dir(&local).with_context(|| format!("{}", local.display()))? {
            let desc = entry?.path().join("desc");
            if let Ok(bytes) = std::fs::read(&desc) {
                let p = pacsync_core::localdb::parse_local_desc(&bytes)
                    .with_context(|| format!("{}", desc.display()))?;
                let mut p = p.to_package();
                p.origin = Some(Origin::Repo("core".into()));
                base.push(p);
            }
        }
        let mut optional = Vec::new();
        for db in [
            "core",
            "testing",
            "multilib",
            "community-testing",
            "multilib-testing",
        ] {
            let path = fixtures.join("sync").join(format!("{db}.db"));
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let entries = pacsync_core::syncdb::parse_sync_db(&bytes)
                .with_context(|| format!("{}", path.display()))?;
            for e in entries {
                if base.iter().any(|b| b.name == e.name) {
                    continue;
                }
                optional.push(Package {
                    name: e.name,
                    version: e.version,
                    arch: e.arch.unwrap_or_else(|| "x86_64".into()),
                    reason: InstallReason::Explicit,
                    origin: Some(Origin::Repo(db.into())),
                    installed_size: e.isize,
                    depends: e.depends,
                });
            }
        }
        optional.sort_by(|a, b| a.name.cmp(&b.name));
        optional.dedup_by(|a, b| a.name == b.name);
        anyhow::ensure!(!base.is_empty() && !optional.is_empty(), "empty fixtures");
        Ok(Universe { base, optional })
    }

    /// Profile `k`: the base plus a share of the optional packages chosen
    /// by `k`, a few of them dependencies.
    pub fn profile(&self, k: u64) -> PackageState {
        let mut rng = Rng::new(k + 1);
        let mut packages = self.base.clone();
        for p in &self.optional {
            if rng.chance(0.45) {
                let mut p = p.clone();
                if rng.chance(0.3) {
                    p.reason = InstallReason::Dependency;
                }
                packages.push(p);
            }
        }
        packages.into_iter().collect()
    }

    /// A state nobody reported before: `state` with a few packages one
    /// pkgrel on (a partial upgrade, a local rebuild).
    pub fn variant(state: &PackageState, seed: u64) -> PackageState {
        let mut rng = Rng::new(seed);
        state
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if rng.chance(0.02) {
                    p.version = format!("{}.{}", p.version, 1 + seed % 9).into();
                }
                p
            })
            .collect()
    }
}

/// A state's hash and its full report body, serialized once.
#[derive(Debug, Clone)]
pub struct Report {
    pub hash: String,
    pub body: Bytes,
}

impl Report {
    pub fn of(state: &PackageState) -> Report {
        let (hash, body) = crate::states::full_body(state);
        Report { hash, body }
    }
}
