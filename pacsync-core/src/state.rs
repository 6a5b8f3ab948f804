//! Package states and target states, identified by the hash of their content.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exclusion::Exclusions;
use crate::package::{InstallReason, Origin, Package};
use crate::version::Version;

/// The sha256 of a state's canonical encoding. Two states with the same
/// content have the same hash on every machine and server, which is what
/// lets the server store a state once and a machine report only the hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a content hash (64 hex digits): {0:?}")]
pub struct HashParseError(String);

impl FromStr for ContentHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, HashParseError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| HashParseError(s.chars().take(80).collect()))?;
        Ok(ContentHash(out))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Every installed package of a machine, by name.
///
/// Kept as one `Vec` sorted by name, looked up by binary search: a map
/// would hold each name twice (key and package) and a node per few
/// packages, and a server parses and drops thousands of these states.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Vec<Package>")]
pub struct PackageState {
    packages: Vec<Package>,
}

impl PackageState {
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.packages[i])
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Packages in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Package> {
        self.packages.iter()
    }

    /// Hash of every reported field, so a change of size, origin or
    /// dependencies is a new state too.
    pub fn content_hash(&self) -> ContentHash {
        let mut h = Sha256::new();
        h.update(b"pacsync-state-v1\n");
        for p in &self.packages {
            let origin = match &p.origin {
                None => "",
                Some(Origin::Foreign) => "\u{1}foreign",
                Some(Origin::Repo(r)) => r,
            };
            for field in [
                p.name.as_str(),
                p.version.as_str(),
                &p.arch,
                p.reason.as_str(),
                origin,
            ] {
                h.update(field.as_bytes());
                h.update(b"\0");
            }
            h.update(p.installed_size.to_le_bytes());
            for dep in &p.depends {
                h.update(dep.as_bytes());
                h.update(b"\x1f");
            }
            h.update(b"\n");
        }
        ContentHash(h.finalize().into())
    }
}

/// Written as the list of packages in name order, without a copy.
impl Serialize for PackageState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.packages)
    }
}

impl FromIterator<Package> for PackageState {
    /// A later package of the same name replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = Package>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl From<Vec<Package>> for PackageState {
    /// A later package of the same name replaces an earlier one. Lists
    /// come sorted from pacman's database, and sorting a sorted list is
    /// one pass.
    fn from(mut packages: Vec<Package>) -> Self {
        if !packages.is_sorted_by(|a, b| a.name < b.name) {
            // Stable: packages of one name stay in the order given.
            packages.sort_by(|a, b| a.name.cmp(&b.name));
            // `dedup_by` keeps the first of a run; swapping each later
            // one into its place keeps the last.
            packages.dedup_by(|later, kept| {
                let same = later.name == kept.name;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        PackageState { packages }
    }
}

impl From<PackageState> for Vec<Package> {
    fn from(s: PackageState) -> Self {
        s.packages
    }
}

/// What a target pins for one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetEntry {
    pub version: Version,
    pub reason: InstallReason,
}

/// A pool's target: the exact set of packages and versions its machines
/// should have. Immutable once made; identified by [`TargetState::content_hash`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetState {
    entries: BTreeMap<String, TargetEntry>,
}

impl TargetState {
    /// The target a machine's state makes (set-as-latest): every package
    /// not excluded, with its version and install reason.
    pub fn from_state(state: &PackageState, exclusions: &Exclusions) -> Self {
        state
            .iter()
            .filter(|p| !exclusions.is_excluded(&p.name))
            .map(|p| {
                (
                    p.name.clone(),
                    TargetEntry {
                        version: p.version.clone(),
                        reason: p.reason,
                    },
                )
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&TargetEntry> {
        self.entries.get(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TargetEntry)> {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }

    pub fn content_hash(&self) -> ContentHash {
        let mut h = Sha256::new();
        h.update(b"pacsync-target-v1\n");
        for (name, e) in &self.entries {
            for field in [name.as_str(), e.version.as_str(), e.reason.as_str()] {
                h.update(field.as_bytes());
                h.update(b"\0");
            }
            h.update(b"\n");
        }
        ContentHash(h.finalize().into())
    }
}

impl FromIterator<(String, TargetEntry)> for TargetState {
    fn from_iter<I: IntoIterator<Item = (String, TargetEntry)>>(iter: I) -> Self {
        TargetState {
            entries: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "x86_64".into(),
            reason: InstallReason::Explicit,
            origin: None,
            installed_size: 1,
            depends: vec![],
        }
    }

    #[test]
    fn hash_depends_on_content_not_order() {
        let a: PackageState = vec![pkg("a", "1"), pkg("b", "2")].into();
        let b: PackageState = vec![pkg("b", "2"), pkg("a", "1")].into();
        assert_eq!(a.content_hash(), b.content_hash());
        let c: PackageState = vec![pkg("a", "1"), pkg("b", "3")].into();
        assert_ne!(a.content_hash(), c.content_hash());
        let mut d = pkg("a", "1");
        d.reason = InstallReason::Dependency;
        let d: PackageState = vec![d, pkg("b", "2")].into();
        assert_ne!(a.content_hash(), d.content_hash());
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a: PackageState = vec![pkg("ab", "1")].into();
        let b: PackageState = vec![pkg("a", "b1")].into();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn target_from_state_applies_exclusions() {
        let state: PackageState = vec![pkg("linux", "6.1-1"), pkg("nvidia-utils", "5-1")].into();
        let ex = Exclusions::from_patterns(["nvidia*"]).expect("valid");
        let t = TargetState::from_state(&state, &ex);
        assert_eq!(t.len(), 1);
        assert!(t.get("linux").is_some());
    }

    #[test]
    fn hash_round_trips_through_text_and_json() {
        let h = TargetState::default().content_hash();
        let parsed: ContentHash = h.to_string().parse().expect("hex");
        assert_eq!(parsed, h);
        let json = serde_json::to_string(&h).expect("serialize");
        assert_eq!(
            serde_json::from_str::<ContentHash>(&json).expect("parse"),
            h
        );
        assert!("zz".parse::<ContentHash>().is_err());
    }

    #[test]
    fn state_serializes_as_a_list() {
        let s: PackageState = vec![pkg("b", "1"), pkg("a", "1")].into();
        let json = serde_json::to_value(&s).expect("serialize");
        assert_eq!(json[0]["name"], "a");
        let back: PackageState = serde_json::from_value(json).expect("parse");
        assert_eq!(back, s);
    }

    #[test]
    fn a_later_package_of_a_name_replaces_an_earlier_one() {
        let s: PackageState = vec![
            pkg("c", "1"),
            pkg("a", "1"),
            pkg("c", "2"),
            pkg("b", "1"),
            pkg("a", "2"),
            pkg("c", "3"),
        ]
        .into();
        let names: Vec<(&str, &str)> = s
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("a", "2"), ("b", "1"), ("c", "3")]);
        assert_eq!(s.get("c").map(|p| p.version.as_str()), Some("3"));
        assert_eq!(s.get("a").map(|p| p.version.as_str()), Some("2"));
        assert!(s.get("d").is_none() && s.get("").is_none());
        let sorted: PackageState = vec![pkg("a", "1"), pkg("b", "1")].into();
        assert_eq!(sorted.get("b").map(|p| p.version.as_str()), Some("1"));
    }
}
