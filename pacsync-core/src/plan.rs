//! The sync plan: what makes a machine equal to its pool's target.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::exclusion::Exclusions;
use crate::package::InstallReason;
use crate::state::{PackageState, TargetState};
use crate::version::Version;

/// A pool's rules for comparing and syncing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Packages the machine has beyond the target stay, and do not count
    /// as a difference.
    #[serde(default)]
    pub keep_extras: bool,
    #[serde(default)]
    pub exclusions: Exclusions,
}

/// What happens to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The target has it, the machine does not.
    Install,
    /// The target's version is newer (pacman's vercmp).
    Upgrade,
    /// The machine's version is newer.
    Downgrade,
    /// The versions differ as strings but vercmp calls them equal
    /// (`1.0` against `1_0`): the target's file is installed.
    Reinstall,
    /// The machine has it, the target does not.
    Remove,
    /// Same version; only the install reason differs.
    ChangeReason,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Downgrade => "downgrade",
            Action::Reinstall => "reinstall",
            Action::Remove => "remove",
            Action::ChangeReason => "change_reason",
        }
    }

    /// Whether this step brings the machine forward to a target that is
    /// ahead of it (`true`) or back from a machine that is ahead (`false`).
    pub fn machine_is_behind(self) -> bool {
        !matches!(self, Action::Downgrade | Action::Remove)
    }
}

/// One package's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub name: String,
    pub action: Action,
    /// Installed version, `None` for an install.
    pub installed: Option<Version>,
    /// Target version, `None` for a removal.
    pub target: Option<Version>,
    /// The reason the package must have afterwards, when it differs from
    /// what pacman leaves by itself (a new package is explicit, an upgraded
    /// one keeps its reason). `None` for removals and when nothing to fix.
    pub set_reason: Option<InstallReason>,
}

/// Counts per action, the one-line shape of a plan every interface shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub install: u32,
    pub upgrade: u32,
    pub downgrade: u32,
    pub reinstall: u32,
    pub remove: u32,
    /// Steps that change the install reason, alone or with a new version.
    pub reason_change: u32,
}

impl PlanSummary {
    pub fn is_empty(&self) -> bool {
        *self == PlanSummary::default()
    }
}

/// The changes, in package-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlan {
    pub steps: Vec<PlanStep>,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary::default();
        for step in &self.steps {
            match step.action {
                Action::Install => s.install += 1,
                Action::Upgrade => s.upgrade += 1,
                Action::Downgrade => s.downgrade += 1,
                Action::Reinstall => s.reinstall += 1,
                Action::Remove => s.remove += 1,
                Action::ChangeReason => {}
            }
            if step.set_reason.is_some() {
                s.reason_change += 1;
            }
        }
        s
    }

    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &PlanStep> {
        self.steps.iter().filter(move |s| s.action == action)
    }
}

/// The plan that makes `installed` equal to `target` under `policy`.
///
/// Excluded names are neither installed, changed nor removed; with
/// `keep_extras` packages absent from the target stay.
pub fn plan(installed: &PackageState, target: &TargetState, policy: &Policy) -> SyncPlan {
    let excluded = |name: &str| policy.exclusions.is_excluded(name);
    let mut steps = Vec::new();
    let mut have = installed.iter().peekable();
    let mut want = target.iter().peekable();
    // Both sides are sorted by name: one merge pass, no lookups.
    loop {
        let order = match (have.peek(), want.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(h), Some((w, _))) => h.name.as_str().cmp(w),
        };
        match order {
            Ordering::Less => {
                let Some(p) = have.next() else { break };
                if !policy.keep_extras && !excluded(&p.name) {
                    steps.push(PlanStep {
                        name: p.name.clone(),
                        action: Action::Remove,
                        installed: Some(p.version.clone()),
                        target: None,
                        set_reason: None,
                    });
                }
            }
            Ordering::Greater => {
                let Some((name, entry)) = want.next() else {
                    break;
                };
                if !excluded(name) {
                    steps.push(PlanStep {
                        name: name.to_owned(),
                        action: Action::Install,
                        installed: None,
                        target: Some(entry.version.clone()),
                        // pacman marks what it installs by name as explicit.
                        set_reason: (entry.reason != InstallReason::Explicit)
                            .then_some(entry.reason),
                    });
                }
            }
            Ordering::Equal => {
                let (Some(p), Some((name, entry))) = (have.next(), want.next()) else {
                    break;
                };
                if excluded(name) {
                    continue;
                }
                let action = if p.version == entry.version {
                    Action::ChangeReason
                } else {
                    match entry.version.cmp_pacman(&p.version) {
                        Ordering::Greater => Action::Upgrade,
                        Ordering::Less => Action::Downgrade,
                        Ordering::Equal => Action::Reinstall,
                    }
                };
                let set_reason = (p.reason != entry.reason).then_some(entry.reason);
                if action == Action::ChangeReason && set_reason.is_none() {
                    continue;
                }
                steps.push(PlanStep {
                    name: p.name.clone(),
                    action,
                    installed: Some(p.version.clone()),
                    target: Some(entry.version.clone()),
                    set_reason,
                });
            }
        }
    }
    SyncPlan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Package;
    use crate::state::TargetEntry;

    pub(crate) fn pkg(name: &str, version: &str, reason: InstallReason) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "x86_64".into(),
            reason,
            origin: None,
            installed_size: 0,
            depends: vec![],
        }
    }

    fn target(entries: &[(&str, &str, InstallReason)]) -> TargetState {
        entries
            .iter()
            .map(|(n, v, r)| {
                (
                    (*n).to_owned(),
                    TargetEntry {
                        version: (*v).into(),
                        reason: *r,
                    },
                )
            })
            .collect()
    }

    use InstallReason::{Dependency as D, Explicit as E};

    #[test]
    fn every_kind_of_step() {
        let installed: PackageState = vec![
            pkg("bash", "5.0-1", E),
            pkg("curl", "8.0-1", E),
            pkg("glibc", "2.38-1", D),
            pkg("vim", "9.0-1", E),
            pkg("zlib", "1.3-1", E),
        ]
        .into();
        let t = target(&[
            ("bash", "5.1-1", E),
            ("curl", "7.9-1", E),
            ("glibc", "2.38-1", E),
            ("htop", "3.2-1", D),
            ("zlib", "1:1.2-1", D),
        ]);
        let plan = plan(&installed, &t, &Policy::default());
        let got: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.action, s.set_reason))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bash", Action::Upgrade, None),
                ("curl", Action::Downgrade, None),
                ("glibc", Action::ChangeReason, Some(E)),
                ("htop", Action::Install, Some(D)),
                ("vim", Action::Remove, None),
                ("zlib", Action::Upgrade, Some(D)),
            ]
        );
        let s = plan.summary();
        assert_eq!(
            (s.install, s.upgrade, s.downgrade, s.remove, s.reason_change),
            (1, 2, 1, 1, 3)
        );
    }

    #[test]
    fn keep_extras_and_exclusions() {
        let installed: PackageState = vec![
            pkg("nvidia", "550-1", E),
            pkg("extra", "1-1", E),
            pkg("bash", "5.0-1", E),
        ]
        .into();
        let t = target(&[
            ("bash", "5.0-1", E),
            ("nvidia", "560-1", E),
            ("linux-firmware", "1-1", E),
        ]);
        let mut policy = Policy {
            keep_extras: true,
            exclusions: Exclusions::from_patterns(["nvidia*", "linux-firmware*"]).expect("valid"),
        };
        assert!(plan(&installed, &t, &policy).is_empty());
        policy.keep_extras = false;
        let p = plan(&installed, &t, &policy);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].name, "extra");
        assert_eq!(p.steps[0].action, Action::Remove);
    }

    #[test]
    fn vercmp_equal_strings_differ_is_reinstall() {
        let installed: PackageState = vec![pkg("a", "1.0_1-1", E)].into();
        let t = target(&[("a", "1.0.1-1", E)]);
        assert_eq!(
            plan(&installed, &t, &Policy::default()).steps[0].action,
            Action::Reinstall
        );
    }
}
