//! Repository analysis of a pool: which target packages every member can
//! install from its own repositories.
//!
//! A package that some member cannot get from its configured repositories
//! would make that member's sync fail, so it is excluded from the pool's
//! comparison automatically. Packages in no member's repositories (AUR and
//! local builds) are excluded the same way. Admins override either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::TargetState;
use crate::version::Version;

/// One sync repository as a machine has it: the versions it offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIndex {
    pub name: String,
    pub packages: BTreeMap<String, Version>,
}

impl RepoIndex {
    /// The content hash machines report and the server stores a repository
    /// under: sha256 over `pacsync-repo-v1\n`, the name and a NUL, then
    /// `name\0version\0\n` per package in name order, as lowercase hex.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pacsync-repo-v1\n");
        h.update(self.name.as_bytes());
        h.update(b"\0");
        for (name, version) in &self.packages {
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(version.as_str().as_bytes());
            h.update(b"\0\n");
        }
        hex::encode(h.finalize())
    }
}

/// A member's repositories, in its pacman.conf order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRepos {
    pub machine: String,
    pub repos: Vec<RepoIndex>,
}

/// Admins' decisions that beat the automatic ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// Compared and synced even when not available everywhere.
    #[serde(default)]
    pub include: BTreeSet<String>,
    /// Never compared nor synced.
    #[serde(default)]
    pub exclude: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// In a repository of every member.
    Everywhere,
    /// In the repositories of some members only.
    Partial,
    /// In no member's repositories.
    Nowhere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// Some members' repositories lack it.
    NotInEveryRepository,
    /// No member's repositories have it.
    InNoRepository,
    /// An admin excluded it.
    Manual,
}

/// Where one member would get one package: the first of its repositories
/// that has the name, as pacman picks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub repo: String,
    pub version: Version,
    /// The repository offers exactly the target's version.
    pub exact: bool,
}

/// One row of the package × machine matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageAvailability {
    pub name: String,
    pub target_version: Version,
    pub availability: Availability,
    /// Per member, in the order of [`RepoAnalysis::machines`].
    pub cells: Vec<Option<Cell>>,
    /// Members' repositories offer different versions of it.
    pub version_conflict: bool,
    pub excluded: Option<ExclusionReason>,
    /// An admin's include override keeps it despite the analysis.
    pub force_included: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoAnalysis {
    pub machines: Vec<String>,
    pub packages: Vec<PackageAvailability>,
}

impl RepoAnalysis {
    /// The names the pool's comparison must leave out.
    pub fn excluded_names(&self) -> BTreeSet<String> {
        self.packages
            .iter()
            .filter(|p| p.excluded.is_some())
            .map(|p| p.name.clone())
            .collect()
    }

    pub fn count(&self, availability: Availability) -> usize {
        self.packages
            .iter()
            .filter(|p| p.availability == availability)
            .count()
    }

    pub fn conflicts(&self) -> impl Iterator<Item = &PackageAvailability> {
        self.packages.iter().filter(|p| p.version_conflict)
    }
}

/// Analyse `target` against every member's repositories.
pub fn analyze(
    target: &TargetState,
    members: &[MachineRepos],
    overrides: &Overrides,
) -> RepoAnalysis {
    // One map per member from name to its first providing repo, so each
    // target package costs one lookup per member.
    let first_repo: Vec<HashMap<&str, (&str, &Version)>> = members
        .iter()
        .map(|m| {
            let mut index = HashMap::new();
            for repo in &m.repos {
                for (name, version) in &repo.packages {
                    index
                        .entry(name.as_str())
                        .or_insert((repo.name.as_str(), version));
                }
            }
            index
        })
        .collect();

    let packages = target
        .iter()
        .map(|(name, entry)| {
            let cells: Vec<Option<Cell>> = first_repo
                .iter()
                .map(|index| {
                    index.get(name).map(|(repo, version)| Cell {
                        repo: (*repo).to_owned(),
                        version: (*version).clone(),
                        exact: **version == entry.version,
                    })
                })
                .collect();
            let present = cells.iter().filter(|c| c.is_some()).count();
            let availability = if present == cells.len() {
                Availability::Everywhere
            } else if present == 0 {
                Availability::Nowhere
            } else {
                Availability::Partial
            };
            let mut offered = cells.iter().flatten().map(|c| &c.version);
            let version_conflict = offered
                .next()
                .is_some_and(|first| offered.any(|v| v != first));
            let force_included = overrides.include.contains(name);
            let excluded = if overrides.exclude.contains(name) {
                Some(ExclusionReason::Manual)
            } else if force_included {
                None
            } else {
                match availability {
                    Availability::Everywhere => None,
                    Availability::Partial => Some(ExclusionReason::NotInEveryRepository),
                    Availability::Nowhere => Some(ExclusionReason::InNoRepository),
                }
            };
            PackageAvailability {
                name: name.to_owned(),
                target_version: entry.version.clone(),
                availability,
                cells,
                version_conflict,
                excluded,
                force_included,
            }
        })
        .collect();

    RepoAnalysis {
        machines: members.iter().map(|m| m.machine.clone()).collect(),
        packages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::InstallReason;
    use crate::state::TargetEntry;

    fn repo(name: &str, pkgs: &[(&str, &str)]) -> RepoIndex {
        RepoIndex {
            name: name.into(),
            packages: pkgs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn repository_hash_is_fixed_and_follows_the_content() {
        let core = repo("core", &[("bash", "5.2.037-1"), ("acl", "2.3.2-1")]);
        // Pinned: daemons and servers of different versions must agree.
        assert_eq!(
            core.content_hash(),
            "1a8b9e82d10489b74d04b687384347a39e5b3de6494f3cbd5006dc2365c08572"
        );
        let mut other = core.clone();
        other.name = "extra".into();
        assert_ne!(other.content_hash(), core.content_hash());
        let newer = repo("core", &[("bash", "5.2.037-2"), ("acl", "2.3.2-1")]);
        assert_ne!(newer.content_hash(), core.content_hash());
    }

    fn target(pkgs: &[(&str, &str)]) -> TargetState {
        pkgs.iter()
            .map(|(n, v)| {
                (
                    (*n).to_owned(),
                    TargetEntry {
                        version: (*v).into(),
                        reason: InstallReason::Explicit,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn availability_exclusions_and_conflicts() {
        let a = MachineRepos {
            machine: "a".into(),
            repos: vec![
                repo("core", &[("bash", "5.1-1"), ("glibc", "2.38-1")]),
                repo("extra", &[("bash", "5.0-1"), ("steam", "1.0-1")]),
            ],
        };
        let b = MachineRepos {
            machine: "b".into(),
            repos: vec![repo("core", &[("bash", "5.2-1"), ("glibc", "2.38-1")])],
        };
        let t = target(&[
            ("bash", "5.1-1"),
            ("glibc", "2.38-1"),
            ("steam", "1.0-1"),
            ("yay", "12-1"),
        ]);
        let r = analyze(&t, &[a, b], &Overrides::default());
        assert_eq!(r.machines, vec!["a", "b"]);
        let by_name: HashMap<_, _> = r.packages.iter().map(|p| (p.name.as_str(), p)).collect();

        let bash = by_name["bash"];
        assert_eq!(bash.availability, Availability::Everywhere);
        // First repository wins, as in pacman.
        assert_eq!(
            bash.cells[0].as_ref().map(|c| c.repo.as_str()),
            Some("core")
        );
        assert!(bash.cells[0].as_ref().is_some_and(|c| c.exact));
        assert!(bash.cells[1].as_ref().is_some_and(|c| !c.exact));
        assert!(bash.version_conflict);
        assert_eq!(bash.excluded, None);

        assert!(!by_name["glibc"].version_conflict);
        assert_eq!(by_name["steam"].availability, Availability::Partial);
        assert_eq!(
            by_name["steam"].excluded,
            Some(ExclusionReason::NotInEveryRepository)
        );
        assert_eq!(by_name["yay"].availability, Availability::Nowhere);
        assert_eq!(
            by_name["yay"].excluded,
            Some(ExclusionReason::InNoRepository)
        );
        assert_eq!(
            r.excluded_names().into_iter().collect::<Vec<_>>(),
            vec!["steam", "yay"]
        );
        assert_eq!(r.conflicts().count(), 1);
    }

    #[test]
    fn overrides_win() {
        let a = MachineRepos {
            machine: "a".into(),
            repos: vec![repo("core", &[("bash", "5.1-1")])],
        };
        let t = target(&[("bash", "5.1-1"), ("yay", "12-1")]);
        let overrides = Overrides {
            include: ["yay".to_owned()].into(),
            exclude: ["bash".to_owned()].into(),
        };
        let r = analyze(&t, &[a], &overrides);
        assert_eq!(r.packages[0].excluded, Some(ExclusionReason::Manual));
        assert_eq!(r.packages[1].excluded, None);
        assert!(r.packages[1].force_included);
    }

    #[test]
    fn no_members_excludes_nothing() {
        let t = target(&[("bash", "5.1-1")]);
        let r = analyze(&t, &[], &Overrides::default());
        assert!(r.excluded_names().is_empty());
    }
}
