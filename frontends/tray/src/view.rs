//! What the tray shows, computed from what the daemon publishes: pure
//! functions of a [`DaemonView`](pacsync_dbus::follow::DaemonView), so every wording and every enabled menu
//! entry is decided (and tested) without a bus.

use std::time::{SystemTime, UNIX_EPOCH};

use pacsync_dbus::{PlanCounts, status_word};

pub use pacsync_dbus::follow::Presence;

/// The icon of a status: its freedesktop icon name is `pacsync-<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IconKind {
    InSync,
    Behind,
    Ahead,
    Diverged,
    Syncing,
    Offline,
    Error,
    /// Not registered, in no pool, no target, or a status this build does
    /// not know.
    Inactive,
    /// No daemon.
    Unavailable,
}

impl IconKind {
    #[cfg(test)]
    pub const ALL: [IconKind; 9] = [
        IconKind::InSync,
        IconKind::Behind,
        IconKind::Ahead,
        IconKind::Diverged,
        IconKind::Syncing,
        IconKind::Offline,
        IconKind::Error,
        IconKind::Inactive,
        IconKind::Unavailable,
    ];

    pub fn icon_name(self) -> &'static str {
        match self {
            IconKind::InSync => "pacsync-in-sync",
            IconKind::Behind => "pacsync-behind",
            IconKind::Ahead => "pacsync-ahead",
            IconKind::Diverged => "pacsync-diverged",
            IconKind::Syncing => "pacsync-syncing",
            IconKind::Offline => "pacsync-offline",
            IconKind::Error => "pacsync-error",
            IconKind::Inactive => "pacsync-inactive",
            IconKind::Unavailable => "pacsync-unavailable",
        }
    }
}

pub fn icon_kind(presence: &Presence) -> IconKind {
    let Presence::Ready(v) = presence else {
        return IconKind::Unavailable;
    };
    match v.status.as_str() {
        "in_sync" => IconKind::InSync,
        "behind" => IconKind::Behind,
        "ahead" => IconKind::Ahead,
        "diverged" => IconKind::Diverged,
        "syncing" => IconKind::Syncing,
        "offline" => IconKind::Offline,
        "error" => IconKind::Error,
        _ => IconKind::Inactive,
    }
}

fn has_changes(c: &PlanCounts) -> bool {
    c.total_changes() + c.reason_change > 0
}

/// The first menu line (and the tooltip's title).
pub fn status_line(presence: &Presence) -> String {
    let v = match presence {
        Presence::Unavailable(why) => return format!("pacsync: {why}"),
        Presence::Ready(v) => v,
    };
    match v.status.as_str() {
        "syncing" => {
            let op = &v.operation;
            let mut s = format!("{} {}%", operation_word(&op.kind), op.percent);
            if !op.phase.is_empty() {
                s.push_str(&format!(" — {}", op.phase));
            }
            s
        }
        "behind" | "ahead" | "diverged" if has_changes(&v.plan) => {
            format!("{}: {}", status_word(&v.status), v.plan.summary())
        }
        "offline" if !v.last_known_status.is_empty() => format!(
            "Offline (last known: {})",
            status_word(&v.last_known_status).to_lowercase()
        ),
        other => status_word(other),
    }
}

pub fn operation_word(kind: &str) -> String {
    match kind {
        "sync" => "Syncing".into(),
        "revert" => "Reverting".into(),
        "set_latest" => "Setting as latest".into(),
        "" => "Working".into(),
        other => other.replace('_', " "),
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// "never", "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(unix: i64, now: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let d = (now - unix).max(0);
    match d {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", d / 60),
        3600..86_400 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

/// The tooltip's description, one fact per line.
pub fn tooltip_body(presence: &Presence, now: i64) -> String {
    let v = match presence {
        Presence::Unavailable(_) => {
            return "Waiting for pacsyncd to start (systemctl status pacsyncd).".into();
        }
        Presence::Ready(v) => v,
    };
    let mut lines = Vec::new();
    if !v.pool.is_empty() {
        lines.push(format!("Pool: {}", v.pool));
    }
    if !v.target.hash.is_empty() {
        lines.push(format!(
            "Target: {} {}, {}",
            &v.target.hash[..v.target.hash.len().min(12)],
            v.target.origin(),
            ago(v.target.set_at, now)
        ));
        lines.push(format!("Plan: {}", v.plan.summary()));
    }
    if !v.last_error.is_empty() {
        lines.push(format!("Error: {}", v.last_error));
    }
    lines.push(format!("Last sync: {}", ago(v.last_sync, now)));
    lines.join("\n")
}

/// Which menu entries make sense now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub sync: bool,
    pub set_latest: bool,
    pub revert: bool,
    pub cancel: bool,
}

pub fn actions(presence: &Presence) -> Actions {
    let Presence::Ready(v) = presence else {
        return Actions {
            sync: false,
            set_latest: false,
            revert: false,
            cancel: false,
        };
    };
    let busy = v.is_busy();
    let st = v.status.as_str();
    Actions {
        // A failed operation can be retried; otherwise only a non-empty
        // plan is worth running.
        sync: !busy
            && (matches!(st, "behind" | "ahead" | "diverged") && has_changes(&v.plan)
                || st == "error" && !v.target.hash.is_empty()),
        // An in-sync machine would set the same target again.
        set_latest: !busy && matches!(st, "behind" | "ahead" | "diverged" | "no_target" | "error"),
        // Only after an operation is there a state to go back to.
        revert: !busy
            && v.last_sync > 0
            && !matches!(st, "unregistered" | "unassigned" | "offline"),
        cancel: busy,
    }
}

/// A desktop notification: summary and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
    pub icon: IconKind,
}

/// The notification for a change of status, if it deserves one: not at
/// start, not for the steps of an operation (its end has its own), not when
/// only the plan's counts moved.
pub fn status_change_note(old: &Presence, new: &Presence) -> Option<Note> {
    let (Presence::Ready(o), Presence::Ready(n)) = (old, new) else {
        return None;
    };
    if o.status == n.status || n.status == "syncing" || o.status == "syncing" {
        return None;
    }
    Some(Note {
        summary: format!("pacsync: {}", status_word(&n.status).to_lowercase()),
        body: tooltip_body(new, now()),
        icon: icon_kind(new),
    })
}

/// The notification for an `OperationFinished` signal.
pub fn finished_note(kind: &str, outcome: &str, message: &str) -> Note {
    let what = match kind {
        "sync" => "Sync",
        "revert" => "Revert",
        "set_latest" => "Set as latest",
        other => other,
    };
    let (summary, icon) = match outcome {
        "succeeded" => (format!("{what} finished"), IconKind::InSync),
        "cancelled" => (format!("{what} cancelled"), IconKind::Inactive),
        "failed" => (format!("{what} failed"), IconKind::Error),
        other => (format!("{what}: {other}"), IconKind::Inactive),
    };
    Note {
        summary,
        body: message.to_owned(),
        icon,
    }
}

#[cfg(test)]
mod tests {
    use pacsync_dbus::follow::DaemonView;
    use pacsync_dbus::{OperationInfo, TargetInfo};

    use super::*;

    fn view(status: &str) -> DaemonView {
        DaemonView {
            status: status.into(),
            pool: "office".into(),
            target: TargetInfo {
                hash: "0123456789abcdef".into(),
                set_by: "admin".into(),
                from_machine: "reference".into(),
                set_at: 1000,
                comment: String::new(),
            },
            plan: PlanCounts {
                upgrade: 2,
                install: 1,
                ..PlanCounts::default()
            },
            ..DaemonView::default()
        }
    }

    #[test]
    fn every_status_has_its_icon() {
        let kinds: Vec<IconKind> = [
            "in_sync",
            "behind",
            "ahead",
            "diverged",
            "syncing",
            "offline",
            "error",
            "unregistered",
        ]
        .iter()
        .map(|s| icon_kind(&Presence::Ready(view(s))))
        .collect();
        assert_eq!(kinds, IconKind::ALL[..8].to_vec());
        assert_eq!(
            icon_kind(&Presence::Unavailable("gone".into())),
            IconKind::Unavailable
        );
        assert_eq!(
            icon_kind(&Presence::Ready(view("from_the_future"))),
            IconKind::Inactive
        );
    }

    #[test]
    fn status_lines_and_tooltips() {
        let behind = Presence::Ready(view("behind"));
        assert_eq!(status_line(&behind), "Behind: 1 to install, 2 to upgrade");
        let mut syncing = view("syncing");
        syncing.operation = OperationInfo {
            id: "op".into(),
            kind: "sync".into(),
            phase: "installing".into(),
            percent: 40,
            message: String::new(),
        };
        assert_eq!(
            status_line(&Presence::Ready(syncing)),
            "Syncing 40% — installing"
        );
        let mut offline = view("offline");
        offline.last_known_status = "in_sync".into();
        assert_eq!(
            status_line(&Presence::Ready(offline)),
            "Offline (last known: in sync)"
        );
        assert_eq!(
            status_line(&Presence::Ready(view("brand_new"))),
            "brand new"
        );
        let body = tooltip_body(&behind, 1000 + 7200);
        assert!(body.contains("Pool: office"), "{body}");
        assert!(
            body.contains("Target: 0123456789ab by admin from reference, 2 h ago"),
            "{body}"
        );
        let mut by_machine = view("behind");
        by_machine.target.set_by = "machine:42".into();
        let body = tooltip_body(&Presence::Ready(by_machine), 1000);
        assert!(
            body.contains("Target: 0123456789ab from reference, just now"),
            "{body}"
        );
        assert!(body.contains("Last sync: never"), "{body}");
    }

    #[test]
    fn menu_entries_only_when_they_make_sense() {
        let a = actions(&Presence::Ready(view("behind")));
        assert!(a.sync && a.set_latest && !a.revert && !a.cancel);
        let mut synced = view("in_sync");
        synced.plan = PlanCounts::default();
        synced.last_sync = 5;
        let a = actions(&Presence::Ready(synced));
        assert!(!a.sync && !a.set_latest && a.revert);
        let mut running = view("syncing");
        running.operation.id = "op".into();
        let a = actions(&Presence::Ready(running));
        assert!(!a.sync && !a.set_latest && !a.revert && a.cancel);
        let a = actions(&Presence::Unavailable("no daemon".into()));
        assert!(!a.sync && !a.set_latest && !a.revert && !a.cancel);
        let a = actions(&Presence::Ready(view("unregistered")));
        assert!(!a.sync && !a.set_latest && !a.revert);
    }

    #[test]
    fn notifications_for_real_changes_only() {
        let behind = Presence::Ready(view("behind"));
        let in_sync = Presence::Ready(view("in_sync"));
        let syncing = Presence::Ready(view("syncing"));
        let gone = Presence::Unavailable("x".into());
        assert!(status_change_note(&behind, &behind).is_none());
        assert!(status_change_note(&behind, &syncing).is_none());
        assert!(status_change_note(&syncing, &in_sync).is_none());
        assert!(status_change_note(&gone, &behind).is_none());
        let n = status_change_note(&in_sync, &behind).expect("a note");
        assert_eq!(n.summary, "pacsync: behind");
        assert_eq!(n.icon, IconKind::Behind);
        let f = finished_note("sync", "failed", "pacman failed: conflict");
        assert_eq!(
            (f.summary.as_str(), f.body.as_str(), f.icon),
            ("Sync failed", "pacman failed: conflict", IconKind::Error)
        );
    }
}
