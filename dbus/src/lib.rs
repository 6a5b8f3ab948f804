//! The D-Bus contract of `pacsyncd`, as frontends use it.
//!
//! `org.pacsync.Daemon1.xml` beside this crate is the documented source of
//! truth; the daemon's test suite introspects the running daemon and compares
//! it with that file, and this proxy is written against the same file.

pub mod follow;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

/// The well-known name the daemon owns on the system bus.
pub const BUS_NAME: &str = "org.pacsync.Daemon1";
/// The object serving the interface.
pub const OBJECT_PATH: &str = "/org/pacsync/Daemon1";
/// The interface name.
pub const INTERFACE: &str = "org.pacsync.Daemon1";
/// The interface description shipped with pacsync.
pub const INTERFACE_XML: &str = include_str!("../org.pacsync.Daemon1.xml");

/// polkit action ids, one per changing verb.
pub mod actions {
    pub const SYNC: &str = "org.pacsync.sync";
    pub const SET_LATEST: &str = "org.pacsync.set-latest";
    pub const REVERT: &str = "org.pacsync.revert";
    pub const CONFIGURE: &str = "org.pacsync.configure";
}

/// The pool's current target, as the `Target` property carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct TargetInfo {
    pub hash: String,
    pub set_by: String,
    pub from_machine: String,
    pub set_at: i64,
    pub comment: String,
}

impl TargetInfo {
    /// Who set a target: "by alice from desk", or "from desk" when a machine
    /// set it (the server names machines `machine:<id>`).
    pub fn origin(&self) -> String {
        let machine = !self.from_machine.is_empty();
        match (
            self.set_by.starts_with("machine:") || self.set_by.is_empty(),
            machine,
        ) {
            (true, true) => format!("from {}", self.from_machine),
            (true, false) => "by a machine".into(),
            (false, true) => format!("by {} from {}", self.set_by, self.from_machine),
            (false, false) => format!("by {}", self.set_by),
        }
    }
}

/// A status as a person reads it; unknown values are shown verbatim.
pub fn status_word(status: &str) -> String {
    match status {
        "in_sync" => "In sync".into(),
        "behind" => "Behind".into(),
        "ahead" => "Ahead".into(),
        "diverged" => "Diverged".into(),
        "syncing" => "Syncing".into(),
        "offline" => "Offline".into(),
        "error" => "Error".into(),
        "unassigned" => "In no pool".into(),
        "no_target" => "Pool has no target".into(),
        "unregistered" => "Not registered".into(),
        other => other.replace('_', " "),
    }
}

/// The running operation, as the `Operation` property carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct OperationInfo {
    pub id: String,
    pub kind: String,
    pub phase: String,
    pub percent: u32,
    pub message: String,
}

impl OperationInfo {
    pub fn is_idle(&self) -> bool {
        self.id.is_empty()
    }
}

/// The counts of the plan to the target, as `PlanSummary` carries them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue,
)]
pub struct PlanCounts {
    pub install: u32,
    pub upgrade: u32,
    pub downgrade: u32,
    pub reinstall: u32,
    pub remove: u32,
    pub reason_change: u32,
}

impl PlanCounts {
    pub fn total_changes(&self) -> u32 {
        // A reason change may ride along a version change; count steps once.
        self.install + self.upgrade + self.downgrade + self.reinstall + self.remove
    }

    /// The counts of a previewed plan's steps.
    pub fn of_steps(steps: &[PlanStepInfo]) -> PlanCounts {
        let mut c = PlanCounts::default();
        for s in steps {
            match s.action.as_str() {
                "install" => c.install += 1,
                "upgrade" => c.upgrade += 1,
                "downgrade" => c.downgrade += 1,
                "reinstall" => c.reinstall += 1,
                "remove" => c.remove += 1,
                _ => {}
            }
            if !s.set_reason.is_empty() {
                c.reason_change += 1;
            }
        }
        c
    }

    /// `2 to install, 1 to upgrade, …` or `nothing to change`: the words
    /// every frontend shows for a plan.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            (self.install, "to install"),
            (self.upgrade, "to upgrade"),
            (self.downgrade, "to downgrade"),
            (self.reinstall, "to reinstall"),
            (self.remove, "to remove"),
            (self.reason_change, "install reasons to change"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| match (n, *what) {
            (1, "install reasons to change") => "1 install reason to change".to_owned(),
            (n, what) => format!("{n} {what}"),
        })
        .collect();
        if parts.is_empty() {
            "nothing to change".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One step of a previewed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PlanStepInfo {
    pub package: String,
    pub action: String,
    pub installed: String,
    pub target: String,
    pub set_reason: String,
}

/// One entry of the daemon's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HistoryEntry {
    pub id: String,
    pub kind: String,
    pub outcome: String,
    pub caller: String,
    pub finished_at: i64,
    pub message: String,
}

/// The daemon's typed errors; frontends match variants, never message text.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.pacsync.Daemon1.Error")]
pub enum DaemonError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NotAuthorized(String),
    Busy(String),
    NotRegistered(String),
    NotInPool(String),
    NoTarget(String),
    ServerUnreachable(String),
    MissingPackages(String),
    PacmanFailed(String),
    Cancelled(String),
    InvalidArgument(String),
    Internal(String),
}

#[zbus::proxy(
    interface = "org.pacsync.Daemon1",
    default_service = "org.pacsync.Daemon1",
    default_path = "/org/pacsync/Daemon1"
)]
pub trait Daemon {
    fn preview(&self, kind: &str) -> Result<Vec<PlanStepInfo>, DaemonError>;
    fn sync(&self) -> Result<String, DaemonError>;
    fn set_latest(&self, comment: &str) -> Result<String, DaemonError>;
    fn revert(&self) -> Result<String, DaemonError>;
    fn cancel(&self) -> Result<(), DaemonError>;
    fn refresh(&self) -> Result<(), DaemonError>;
    fn register(
        &self,
        server_url: &str,
        enrollment_token: &str,
        machine_name: &str,
    ) -> Result<(), DaemonError>;
    fn configure(
        &self,
        settings: std::collections::HashMap<String, String>,
    ) -> Result<(), DaemonError>;
    fn history(&self, limit: u32) -> Result<Vec<HistoryEntry>, DaemonError>;

    #[zbus(signal)]
    fn operation_progress(
        &self,
        operation_id: &str,
        phase: &str,
        percent: u32,
        message: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn operation_finished(
        &self,
        operation_id: &str,
        kind: &str,
        outcome: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn daemon_version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn capabilities(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_known_status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn pool(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn target(&self) -> zbus::Result<TargetInfo>;
    #[zbus(property)]
    fn last_sync(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn last_report(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<OperationInfo>;
    #[zbus(property)]
    fn plan_summary(&self) -> zbus::Result<PlanCounts>;
    #[zbus(property)]
    fn server_url(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn machine_name(&self) -> zbus::Result<String>;
}
