//! `pacsync waybar`: one JSON line at start and one per change, for a
//! WayBar custom module with `"return-type": "json"` and no interval.
//!
//! Driven by D-Bus signals only, by [`pacsync_dbus::follow`]: the daemon's
//! `PropertiesChanged`, `OperationProgress` and `OperationFinished`, and the
//! bus's `NameOwnerChanged` to notice the daemon leaving and coming back. It
//! never exits on its own: with no daemon it says so and waits for one; with
//! no bus it retries with backoff.

use std::io::Write;

use pacsync_dbus::follow::{Event, Presence};
use serde_json::{Value, json};

use crate::commands::view_json;
use crate::output;
use crate::{Failure, Global, exit};

/// The WayBar line for a status reading (`None`: no daemon).
pub fn line(status: Option<&Value>, why_unavailable: &str) -> Value {
    let Some(s) = status else {
        return json!({
            "text": "pacsync: unavailable",
            "alt": "unavailable",
            "class": "unavailable",
            "tooltip": format!("pacsync: {why_unavailable}"),
            "percentage": 0,
        });
    };
    let st = s["status"].as_str().unwrap_or("unknown");
    let counts: pacsync_dbus::PlanCounts =
        serde_json::from_value(s["plan_summary"].clone()).unwrap_or_default();
    let changes = counts.total_changes().max(counts.reason_change);
    let percent = s["operation"]["percent"].as_u64().unwrap_or(0);
    let text = match st {
        "syncing" => format!("syncing {percent}%"),
        "behind" | "ahead" | "diverged" if changes > 0 => format!("{} {changes}", st),
        other => other.replace('_', " "),
    };
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut tooltip = vec![format!("pacsync: {}", st.replace('_', " "))];
    let pool = str_of(&s["pool"]);
    if !pool.is_empty() {
        tooltip.push(format!("Pool: {pool}"));
    }
    let hash = str_of(&s["target"]["hash"]);
    if !hash.is_empty() {
        tooltip.push(format!(
            "Target: {} by {} on {}",
            &hash[..hash.len().min(12)],
            str_of(&s["target"]["set_by"]),
            output::time(s["target"]["set_at"].as_i64().unwrap_or(0))
        ));
        tooltip.push(format!("Plan: {}", counts.summary()));
    }
    if st == "offline" {
        tooltip.push(format!(
            "Last known: {}",
            str_of(&s["last_known_status"]).replace('_', " ")
        ));
    }
    let err = str_of(&s["last_error"]);
    if !err.is_empty() {
        tooltip.push(format!("Error: {err}"));
    }
    tooltip.push(format!(
        "Last sync: {}",
        output::time(s["last_sync"].as_i64().unwrap_or(0))
    ));
    json!({
        "text": text,
        "alt": st,
        "class": st,
        "tooltip": tooltip.join("\n"),
        "percentage": percent,
    })
}

struct Printer {
    last: String,
}

impl Printer {
    fn print(&mut self, v: &Value) {
        let s = v.to_string();
        if s == self.last {
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed pipe means the bar went away: nothing left to do.
        if writeln!(out, "{s}").and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
        self.last = s;
    }
}

/// Prints a line now and after every change; never returns (a closed
/// stdout ends the process).
pub async fn run(global: &Global) -> Result<u8, Failure> {
    let mut printer = Printer {
        last: String::new(),
    };
    pacsync_dbus::follow::follow(global.bus.clone(), |event| {
        match event {
            Event::Presence(Presence::Ready(v)) => printer.print(&line(Some(&view_json(&v)), "")),
            Event::Presence(Presence::Unavailable(why)) => printer.print(&line(None, &why)),
            Event::Connected(_) | Event::Progress { .. } | Event::Finished { .. } => {}
        }
        std::future::ready(true)
    })
    .await;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_each_kind_of_status() {
        let unavailable = line(None, "pacsyncd is not running");
        assert_eq!(unavailable["class"], "unavailable");
        let s = json!({
            "status": "behind", "pool": "office", "last_known_status": "behind", "last_error": "",
            "target": {"hash": "0123456789abcdef", "set_by": "admin", "set_at": 1, "from_machine": "", "comment": ""},
            "plan_summary": {"install": 1, "upgrade": 2, "downgrade": 0, "reinstall": 0, "remove": 0, "reason_change": 0},
            "last_sync": 0, "operation": null,
        });
        let l = line(Some(&s), "");
        assert_eq!(l["text"], "behind 3");
        assert_eq!(l["class"], "behind");
        assert!(
            l["tooltip"]
                .as_str()
                .is_some_and(|t| t.contains("Pool: office") && t.contains("1 to install"))
        );
        let mut syncing = s.clone();
        syncing["status"] = json!("syncing");
        syncing["operation"] = json!({"percent": 42});
        let l = line(Some(&syncing), "");
        assert_eq!(l["text"], "syncing 42%");
        assert_eq!(l["percentage"], 42);
    }
}
