//! A machine's status against its pool's target.
//!
//! The comparison part (in sync / ahead / behind / diverged) is read off the
//! sync plan, so a machine is `in_sync` exactly when syncing would change
//! nothing. A differing install reason counts as behind: the target records
//! the reason and the machine has not followed it yet.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::plan::SyncPlan;

/// Where a machine stands, as every interface shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    InSync,
    Behind,
    Ahead,
    Diverged,
    /// Not heard from within the pool's grace period.
    Offline,
    /// In no pool.
    Unassigned,
    /// The pool has no target yet.
    NoTarget,
    /// An operation is running.
    Syncing,
    /// The last operation failed; its message is kept with the machine.
    Error,
}

impl EndpointStatus {
    pub const ALL: [EndpointStatus; 9] = [
        EndpointStatus::InSync,
        EndpointStatus::Behind,
        EndpointStatus::Ahead,
        EndpointStatus::Diverged,
        EndpointStatus::Offline,
        EndpointStatus::Unassigned,
        EndpointStatus::NoTarget,
        EndpointStatus::Syncing,
        EndpointStatus::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::InSync => "in_sync",
            EndpointStatus::Behind => "behind",
            EndpointStatus::Ahead => "ahead",
            EndpointStatus::Diverged => "diverged",
            EndpointStatus::Offline => "offline",
            EndpointStatus::Unassigned => "unassigned",
            EndpointStatus::NoTarget => "no_target",
            EndpointStatus::Syncing => "syncing",
            EndpointStatus::Error => "error",
        }
    }
}

impl fmt::Display for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for EndpointStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        EndpointStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// How the machine's packages compare with the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    InSync,
    Behind,
    Ahead,
    Diverged,
}

impl From<Drift> for EndpointStatus {
    fn from(d: Drift) -> Self {
        match d {
            Drift::InSync => EndpointStatus::InSync,
            Drift::Behind => EndpointStatus::Behind,
            Drift::Ahead => EndpointStatus::Ahead,
            Drift::Diverged => EndpointStatus::Diverged,
        }
    }
}

/// Classify a plan: steps that bring the machine forward mean it is behind,
/// steps that take it back (downgrade, remove) mean it is ahead.
pub fn drift(plan: &SyncPlan) -> Drift {
    let behind = plan.steps.iter().any(|s| s.action.machine_is_behind());
    let ahead = plan.steps.iter().any(|s| !s.action.machine_is_behind());
    match (behind, ahead) {
        (false, false) => Drift::InSync,
        (true, false) => Drift::Behind,
        (false, true) => Drift::Ahead,
        (true, true) => Drift::Diverged,
    }
}

/// Everything besides the packages that decides a machine's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    pub in_pool: bool,
    pub pool_has_target: bool,
    /// Heard from within the pool's grace period.
    pub online: bool,
    pub operation_running: bool,
    pub last_operation_failed: bool,
}

/// The status to show, by precedence: a running operation first, then a
/// failure that needs attention, then reachability, then membership, and
/// only then the package comparison. `drift` is `None` when no comparison
/// could be made (no state reported yet); such a machine shows as behind
/// its target.
pub fn endpoint_status(situation: Situation, drift: Option<Drift>) -> EndpointStatus {
    if situation.operation_running {
        EndpointStatus::Syncing
    } else if situation.last_operation_failed {
        EndpointStatus::Error
    } else if !situation.online {
        EndpointStatus::Offline
    } else if !situation.in_pool {
        EndpointStatus::Unassigned
    } else if !situation.pool_has_target {
        EndpointStatus::NoTarget
    } else {
        drift.map_or(EndpointStatus::Behind, EndpointStatus::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, PlanStep};

    fn plan_of(actions: &[Action]) -> SyncPlan {
        SyncPlan {
            steps: actions
                .iter()
                .map(|&action| PlanStep {
                    name: "p".into(),
                    action,
                    installed: None,
                    target: None,
                    set_reason: None,
                })
                .collect(),
        }
    }

    #[test]
    fn drift_follows_the_plan() {
        use Action::*;
        assert_eq!(drift(&plan_of(&[])), Drift::InSync);
        assert_eq!(drift(&plan_of(&[Install, Upgrade])), Drift::Behind);
        assert_eq!(drift(&plan_of(&[ChangeReason])), Drift::Behind);
        assert_eq!(drift(&plan_of(&[Downgrade, Remove])), Drift::Ahead);
        assert_eq!(drift(&plan_of(&[Upgrade, Remove])), Drift::Diverged);
    }

    #[test]
    fn precedence() {
        let base = Situation {
            in_pool: true,
            pool_has_target: true,
            online: true,
            operation_running: false,
            last_operation_failed: false,
        };
        assert_eq!(
            endpoint_status(base, Some(Drift::Ahead)),
            EndpointStatus::Ahead
        );
        let s = Situation {
            online: false,
            ..base
        };
        assert_eq!(
            endpoint_status(s, Some(Drift::InSync)),
            EndpointStatus::Offline
        );
        let s = Situation {
            operation_running: true,
            online: false,
            ..base
        };
        assert_eq!(endpoint_status(s, None), EndpointStatus::Syncing);
        let s = Situation {
            in_pool: false,
            ..base
        };
        assert_eq!(endpoint_status(s, None), EndpointStatus::Unassigned);
        let s = Situation {
            pool_has_target: false,
            ..base
        };
        assert_eq!(endpoint_status(s, None), EndpointStatus::NoTarget);
        let s = Situation {
            last_operation_failed: true,
            ..base
        };
        assert_eq!(
            endpoint_status(s, Some(Drift::InSync)),
            EndpointStatus::Error
        );
    }

    #[test]
    fn names_round_trip() {
        for st in EndpointStatus::ALL {
            assert_eq!(st.as_str().parse::<EndpointStatus>(), Ok(st));
            assert_eq!(serde_json::to_value(st).expect("serialize"), st.as_str());
        }
        assert!("bogus".parse::<EndpointStatus>().is_err());
    }
}
