//! How things look: status words, colours (only on a terminal, never with
//! `NO_COLOR`), times, plan tables.

use std::io::IsTerminal;

use pacsync_dbus::PlanStepInfo;

pub fn colour_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// A status word in its colour.
pub fn status_word(status: &str) -> String {
    let text = status.replace('_', " ");
    if !colour_enabled() {
        return text;
    }
    let code = match status {
        "in_sync" => "32",
        "behind" | "syncing" => "33",
        "ahead" => "36",
        "diverged" | "error" => "31",
        _ => "2",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

/// `2026-11-22 05:00 UTC`, or `never` for 0.
pub fn time(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The plan as an aligned table.
pub fn plan_table(steps: &[PlanStepInfo]) -> String {
    let rows: Vec<[String; 4]> = steps
        .iter()
        .map(|s| {
            let action = if s.set_reason.is_empty() || s.action == "change_reason" {
                s.action.replace('_', " ")
            } else {
                format!("{} (as {})", s.action, s.set_reason)
            };
            let action = if s.action == "change_reason" {
                format!("mark as {}", s.set_reason)
            } else {
                action
            };
            [
                action,
                s.package.clone(),
                dash(&s.installed),
                dash(&s.target),
            ]
        })
        .collect();
    let header = ["ACTION", "PACKAGE", "INSTALLED", "TARGET"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacsync_dbus::PlanCounts;

    #[test]
    fn civil_times() {
        assert_eq!(time(0), "never");
        assert_eq!(time(1), "1970-01-01 00:00 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(time(1_795_305_600 + 3_660), "2026-11-22 01:01 UTC");
    }

    #[test]
    fn summaries() {
        assert_eq!(PlanCounts::default().summary(), "nothing to change");
        let c = PlanCounts {
            install: 2,
            remove: 1,
            ..Default::default()
        };
        assert_eq!(c.summary(), "2 to install, 1 to remove");
    }
}
