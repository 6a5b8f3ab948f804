//! Properties of plan and status over generated states.

use std::collections::BTreeMap;

use pacsync_core::exclusion::Exclusions;
use pacsync_core::package::{InstallReason, Package};
use pacsync_core::plan::{Action, Policy, plan};
use pacsync_core::state::{PackageState, TargetEntry, TargetState};
use pacsync_core::status::{Drift, drift};
use proptest::prelude::*;

fn reason() -> impl Strategy<Value = InstallReason> {
    prop_oneof![
        Just(InstallReason::Explicit),
        Just(InstallReason::Dependency)
    ]
}

fn version() -> impl Strategy<Value = String> {
    (0u8..3, 0u8..4, 0u8..4, 1u8..3, prop::bool::ANY).prop_map(|(e, a, b, rel, epoch)| {
        if epoch && e > 0 {
            format!("{e}:{a}.{b}-{rel}")
        } else {
            format!("{a}.{b}-{rel}")
        }
    })
}

fn state() -> impl Strategy<Value = PackageState> {
    prop::collection::btree_map("[a-f]{1,2}", (version(), reason()), 0..20).prop_map(|m| {
        m.into_iter()
            .map(|(name, (v, r))| Package {
                name,
                version: v.into(),
                arch: "x86_64".into(),
                reason: r,
                origin: None,
                installed_size: 0,
                depends: vec![],
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (prop::bool::ANY, prop::collection::vec("[a-f]\\*?", 0..3)).prop_map(|(keep, pats)| Policy {
        keep_extras: keep,
        exclusions: Exclusions::from_patterns(pats.iter().map(String::as_str))
            .expect("valid patterns"),
    })
}

/// What pacman leaves behind after carrying out `plan` on `state`.
fn apply(
    state: &PackageState,
    plan: &pacsync_core::plan::SyncPlan,
) -> BTreeMap<String, (String, InstallReason)> {
    let mut out: BTreeMap<_, _> = state
        .iter()
        .map(|p| (p.name.clone(), (p.version.to_string(), p.reason)))
        .collect();
    for step in &plan.steps {
        match step.action {
            Action::Remove => {
                out.remove(&step.name);
            }
            _ => {
                let target = step
                    .target
                    .as_ref()
                    .expect("non-removal has a target")
                    .to_string();
                let entry = out
                    .entry(step.name.clone())
                    .or_insert((target.clone(), InstallReason::Explicit));
                entry.0 = target;
                if let Some(r) = step.set_reason {
                    entry.1 = r;
                }
            }
        }
    }
    out
}

fn comparable(
    m: &BTreeMap<String, (String, InstallReason)>,
    policy: &Policy,
) -> BTreeMap<String, (String, InstallReason)> {
    m.iter()
        .filter(|(n, _)| !policy.exclusions.is_excluded(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Carrying out the plan makes the machine equal to the target (outside
    /// exclusions and, with keep-extras, outside the extras).
    #[test]
    fn applying_the_plan_reaches_the_target(installed in state(), target_src in state(), policy in policy()) {
        let target = TargetState::from_state(&target_src, &Exclusions::default());
        let p = plan(&installed, &target, &policy);
        let after = apply(&installed, &p);
        let want: BTreeMap<_, _> = target
            .iter()
            .map(|(n, e)| (n.to_owned(), (e.version.to_string(), e.reason)))
            .collect();
        let mut got = comparable(&after, &policy);
        if policy.keep_extras {
            got.retain(|n, _| want.contains_key(n));
        }
        prop_assert_eq!(got, comparable(&want, &policy));
        // Excluded packages are never touched.
        for step in &p.steps {
            prop_assert!(!policy.exclusions.is_excluded(&step.name));
        }
    }

    /// A machine is in sync with the target its own state makes, and the
    /// plan is empty exactly when the status is in sync.
    #[test]
    fn in_sync_iff_plan_empty(installed in state(), target_src in state(), policy in policy()) {
        let own = TargetState::from_state(&installed, &Exclusions::default());
        prop_assert!(plan(&installed, &own, &policy).is_empty());
        let target = TargetState::from_state(&target_src, &Exclusions::default());
        let p = plan(&installed, &target, &policy);
        prop_assert_eq!(p.is_empty(), drift(&p) == Drift::InSync);
    }

    /// Behind one way is ahead the other way, when install reasons agree.
    #[test]
    fn behind_mirrors_ahead(a in state(), b in state()) {
        // Give shared packages the same reason on both sides.
        let b: PackageState = b
            .iter()
            .map(|q| Package { reason: a.get(&q.name).map_or(q.reason, |p| p.reason), ..q.clone() })
            .collect();
        let policy = Policy::default();
        let ta = TargetState::from_state(&a, &Exclusions::default());
        let tb = TargetState::from_state(&b, &Exclusions::default());
        let ab = drift(&plan(&a, &tb, &policy));
        let ba = drift(&plan(&b, &ta, &policy));
        let mirrored = match ab {
            Drift::Behind => Drift::Ahead,
            Drift::Ahead => Drift::Behind,
            other => other,
        };
        // Reinstall (vercmp-equal, different strings) is "behind" both ways.
        let has_reinstall = plan(&a, &tb, &policy).steps.iter().any(|s| s.action == Action::Reinstall);
        if !has_reinstall {
            prop_assert_eq!(ba, mirrored);
        }
    }

    #[test]
    fn target_hash_is_a_function_of_content(s in state()) {
        let t1 = TargetState::from_state(&s, &Exclusions::default());
        let reversed: PackageState = s.iter().rev().cloned().collect();
        let t2 = TargetState::from_state(&reversed, &Exclusions::default());
        prop_assert_eq!(t1.content_hash(), t2.content_hash());
        prop_assert_eq!(s.content_hash(), reversed.content_hash());
        let rebuilt: TargetState = t1.iter().map(|(n, e)| (n.to_owned(), TargetEntry { version: e.version.clone(), reason: e.reason })).collect();
        prop_assert_eq!(rebuilt.content_hash(), t1.content_hash());
    }
}
