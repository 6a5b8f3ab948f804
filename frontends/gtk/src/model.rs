//! What the window shows, as pure functions of the daemon's properties:
//! wording, which buttons make sense, how the plan is filtered and sorted.

use std::cmp::Ordering;

use pacsync_dbus::PlanStepInfo;

pub use pacsync_dbus::follow::{DaemonView, Presence};

/// The `pacsync-<kind>` icon of a status (shipped in `data/icons/`).
pub fn icon_name(presence: &Presence) -> &'static str {
    match presence {
        Presence::Unavailable(_) => "pacsync-unavailable",
        Presence::Ready(v) => match v.status.as_str() {
            "in_sync" => "pacsync-in-sync",
            "behind" => "pacsync-behind",
            "ahead" => "pacsync-ahead",
            "diverged" => "pacsync-diverged",
            "syncing" => "pacsync-syncing",
            "offline" => "pacsync-offline",
            "error" => "pacsync-error",
            _ => "pacsync-inactive",
        },
    }
}

/// The operation kinds the window starts, as the daemon names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Sync,
    SetLatest,
    Revert,
}

impl Verb {
    pub fn preview_kind(self) -> &'static str {
        match self {
            Verb::Sync => "sync",
            Verb::SetLatest => "set_latest",
            Verb::Revert => "revert",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Verb::Sync => "Sync to the pool's target?",
            Verb::SetLatest => "Make this machine the pool's target?",
            Verb::Revert => "Revert the last operation?",
        }
    }

    pub fn confirm_label(self) -> &'static str {
        match self {
            Verb::Sync => "_Sync",
            Verb::SetLatest => "Set as _latest",
            Verb::Revert => "_Revert",
        }
    }

    /// What the plan's rows mean for this verb.
    pub fn explanation(self) -> &'static str {
        match self {
            Verb::Sync => "pacman will make these changes on this machine:",
            Verb::SetLatest => "The pool's target will change like this for every machine:",
            Verb::Revert => "pacman will make these changes to go back:",
        }
    }
}

pub fn operation_word(kind: &str) -> String {
    match kind {
        "sync" => "Sync".into(),
        "revert" => "Revert".into(),
        "set_latest" => "Set as latest".into(),
        "" => "Operation".into(),
        other => other.replace('_', " "),
    }
}

/// Which buttons make sense now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buttons {
    pub sync: bool,
    pub set_latest: bool,
    pub revert: bool,
    pub refresh: bool,
    pub cancel: bool,
}

pub fn buttons(presence: &Presence) -> Buttons {
    let Presence::Ready(v) = presence else {
        return Buttons::default();
    };
    let busy = v.is_busy();
    let st = v.status.as_str();
    Buttons {
        sync: !busy
            && (matches!(st, "behind" | "ahead" | "diverged") && v.has_changes()
                || st == "error" && !v.target.hash.is_empty()),
        set_latest: !busy && matches!(st, "behind" | "ahead" | "diverged" | "no_target" | "error"),
        revert: !busy
            && v.last_sync > 0
            && !matches!(st, "unregistered" | "unassigned" | "offline"),
        refresh: !busy,
        cancel: busy,
    }
}

/// The plan table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Package,
    Installed,
    Target,
    Action,
}

impl Column {
    pub const ALL: [Column; 4] = [
        Column::Package,
        Column::Installed,
        Column::Target,
        Column::Action,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Package => "Package",
            Column::Installed => "Installed",
            Column::Target => "Target",
            Column::Action => "Action",
        }
    }

    pub fn text(self, s: &PlanStepInfo) -> String {
        match self {
            Column::Package => s.package.clone(),
            Column::Installed => dash(&s.installed),
            Column::Target => dash(&s.target),
            Column::Action => action_text(s),
        }
    }

    /// Package names and actions compare as text; versions compare as
    /// versions would at a glance (numbers by value), empty last.
    pub fn compare(self, a: &PlanStepInfo, b: &PlanStepInfo) -> Ordering {
        match self {
            Column::Package => a.package.cmp(&b.package),
            Column::Installed => natural(&a.installed, &b.installed),
            Column::Target => natural(&a.target, &b.target),
            Column::Action => action_text(a).cmp(&action_text(b)),
        }
        .then_with(|| a.package.cmp(&b.package))
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() { "—".into() } else { s.into() }
}

pub fn action_text(s: &PlanStepInfo) -> String {
    let action = match s.action.as_str() {
        "change_reason" => "change reason".to_owned(),
        other => other.to_owned(),
    };
    match s.set_reason.as_str() {
        "" => action,
        reason if s.action == "change_reason" => format!("{action} → {reason}"),
        reason => format!("{action} (as {reason})"),
    }
}

/// Digit runs compare by value, the rest by bytes; empty sorts last.
fn natural(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while let (Some(&c), Some(&d)) = (x.first(), y.first()) {
        if c.is_ascii_digit() && d.is_ascii_digit() {
            let n = x.iter().take_while(|b| b.is_ascii_digit()).count();
            let m = y.iter().take_while(|b| b.is_ascii_digit()).count();
            let (p, q) = (trim_zeros(&x[..n]), trim_zeros(&y[..m]));
            let o = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
            if o != Ordering::Equal {
                return o;
            }
            x = &x[n..];
            y = &y[m..];
        } else {
            if c != d {
                return c.cmp(&d);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|d| **d == b'0').count();
    &digits[zeros..]
}

/// Whether a row matches the filter text (package or action, any case).
pub fn matches(s: &PlanStepInfo, filter: &str) -> bool {
    let f = filter.trim().to_lowercase();
    f.is_empty()
        || s.package.to_lowercase().contains(&f)
        || action_text(s).to_lowercase().contains(&f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacsync_dbus::{OperationInfo, PlanCounts, TargetInfo, status_word};

    fn step(package: &str, action: &str, installed: &str, target: &str) -> PlanStepInfo {
        PlanStepInfo {
            package: package.into(),
            action: action.into(),
            installed: installed.into(),
            target: target.into(),
            set_reason: String::new(),
        }
    }

    #[test]
    fn versions_sort_by_value_and_empty_last() {
        let a = step("a", "upgrade", "1.10-1", "2.0-1");
        let b = step("b", "upgrade", "1.9-1", "2.0-1");
        let c = step("c", "install", "", "1.0-1");
        assert_eq!(Column::Installed.compare(&b, &a), Ordering::Less);
        assert_eq!(Column::Installed.compare(&c, &a), Ordering::Greater);
        // Equal versions fall back to the package name.
        assert_eq!(Column::Target.compare(&a, &b), Ordering::Less);
        assert_eq!(Column::Package.compare(&c, &a), Ordering::Greater);
    }

    #[test]
    fn filter_and_cells() {
        let mut s = step("gamma", "install", "", "1.0-1");
        s.set_reason = "dependency".into();
        assert!(matches(&s, "GAM"));
        assert!(matches(&s, "install"));
        assert!(!matches(&s, "alpha"));
        assert_eq!(Column::Installed.text(&s), "—");
        assert_eq!(Column::Action.text(&s), "install (as dependency)");
        let mut r = step("beta", "change_reason", "1.0-1", "1.0-1");
        r.set_reason = "explicit".into();
        assert_eq!(Column::Action.text(&r), "change reason → explicit");
        assert_eq!(
            PlanCounts::of_steps(&[s, r]).summary(),
            "1 to install, 2 install reasons to change"
        );
    }

    #[test]
    fn buttons_only_when_they_make_sense() {
        let mut v = DaemonView {
            status: "behind".into(),
            plan: PlanCounts {
                upgrade: 1,
                ..PlanCounts::default()
            },
            ..DaemonView::default()
        };
        let b = buttons(&Presence::Ready(v.clone()));
        assert!(b.sync && b.set_latest && !b.revert && b.refresh && !b.cancel);
        v.status = "syncing".into();
        v.operation.id = "op".into();
        let b = buttons(&Presence::Ready(v.clone()));
        assert!(!b.sync && !b.set_latest && !b.revert && !b.refresh && b.cancel);
        v.status = "in_sync".into();
        v.operation = OperationInfo::default();
        v.plan = PlanCounts::default();
        v.last_sync = 10;
        let b = buttons(&Presence::Ready(v));
        assert!(!b.sync && !b.set_latest && b.revert);
        assert_eq!(
            buttons(&Presence::Unavailable("gone".into())),
            Buttons::default()
        );
    }

    #[test]
    fn who_set_the_target() {
        let mut t = TargetInfo {
            set_by: "alice".into(),
            from_machine: "desk".into(),
            ..TargetInfo::default()
        };
        assert_eq!(t.origin(), "by alice from desk");
        t.set_by = "machine:7".into();
        assert_eq!(t.origin(), "from desk");
        t.from_machine.clear();
        assert_eq!(t.origin(), "by a machine");
    }

    #[test]
    fn icons_and_words_for_unknown_statuses() {
        let v = DaemonView {
            status: "from_the_future".into(),
            ..DaemonView::default()
        };
        assert_eq!(icon_name(&Presence::Ready(v)), "pacsync-inactive");
        assert_eq!(status_word("from_the_future"), "from the future");
        assert_eq!(
            icon_name(&Presence::Unavailable(String::new())),
            "pacsync-unavailable"
        );
    }
}
