//! The subcommands that talk to the daemon.

use std::io::{IsTerminal, Write};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use pacsync_dbus::follow::DaemonView;
use pacsync_dbus::{DaemonProxy, PlanCounts};
use serde_json::{Value, json};

use crate::output::{self, status_word};
use crate::{Failure, Global, exit};

/// Everything `status` shows, as JSON.
pub async fn status_json(d: &DaemonProxy<'_>) -> Result<Value, Failure> {
    let view = DaemonView {
        status: d.status().await?,
        last_known_status: d.last_known_status().await?,
        last_error: d.last_error().await?,
        pool: d.pool().await?,
        target: d.target().await?,
        last_sync: d.last_sync().await?,
        last_report: d.last_report().await?,
        operation: d.operation().await?,
        plan: d.plan_summary().await?,
        server_url: d.server_url().await?,
        machine_name: d.machine_name().await?,
        // Not shown.
        daemon_version: String::new(),
    };
    Ok(view_json(&view))
}

/// A reading of the daemon's properties as `status --json` prints it.
pub fn view_json(v: &DaemonView) -> Value {
    json!({
        "status": v.status,
        "last_known_status": v.last_known_status,
        "last_error": v.last_error,
        "pool": v.pool,
        "target": v.target,
        "plan_summary": v.plan,
        "last_sync": v.last_sync,
        "last_report": v.last_report,
        "operation": if v.operation.is_idle() { Value::Null } else { json!(v.operation) },
        "server_url": v.server_url,
        "machine_name": v.machine_name,
    })
}

pub async fn status(d: &DaemonProxy<'_>, g: &Global) -> Result<u8, Failure> {
    let s = status_json(d).await?;
    let st = s["status"].as_str().unwrap_or_default().to_owned();
    if g.json {
        println!("{s}");
    } else {
        let mut out = format!("Status:      {}", status_word(&st));
        if st == "offline" {
            out.push_str(&format!(
                " (last known: {})",
                status_word(s["last_known_status"].as_str().unwrap_or_default())
            ));
        }
        out.push('\n');
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let pool = str_of(&s["pool"]);
        out.push_str(&format!(
            "Pool:        {}\n",
            if pool.is_empty() { "-".into() } else { pool }
        ));
        let hash = str_of(&s["target"]["hash"]);
        if !hash.is_empty() {
            let mut line = format!(
                "Target:      {} set by {} on {}",
                &hash[..hash.len().min(12)],
                or_unknown(&str_of(&s["target"]["set_by"])),
                output::time(s["target"]["set_at"].as_i64().unwrap_or(0))
            );
            let from = str_of(&s["target"]["from_machine"]);
            if !from.is_empty() {
                line.push_str(&format!(" from {from}"));
            }
            let comment = str_of(&s["target"]["comment"]);
            if !comment.is_empty() {
                line.push_str(&format!(": \"{comment}\""));
            }
            out.push_str(&line);
            out.push('\n');
            let counts: pacsync_dbus::PlanCounts =
                serde_json::from_value(s["plan_summary"].clone()).unwrap_or_default();
            out.push_str(&format!("Plan:        {}\n", counts.summary()));
        }
        if let Some(op) = s["operation"].as_object() {
            out.push_str(&format!(
                "Operation:   {} {}% {}\n",
                op["kind"].as_str().unwrap_or_default(),
                op["percent"],
                op["message"].as_str().unwrap_or_default()
            ));
        }
        let err = str_of(&s["last_error"]);
        if !err.is_empty() {
            out.push_str(&format!("Last error:  {err}\n"));
        }
        out.push_str(&format!(
            "Last sync:   {}\n",
            output::time(s["last_sync"].as_i64().unwrap_or(0))
        ));
        out.push_str(&format!(
            "Last report: {}\n",
            output::time(s["last_report"].as_i64().unwrap_or(0))
        ));
        print!("{out}");
    }
    Ok(if st == "in_sync" {
        exit::OK
    } else {
        exit::NOT_IN_SYNC
    })
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

fn wire_kind(kind: &str) -> &str {
    if kind == "set-latest" {
        "set_latest"
    } else {
        kind
    }
}

pub async fn plan(d: &DaemonProxy<'_>, g: &Global, kind: &str) -> Result<u8, Failure> {
    let steps = d.preview(wire_kind(kind)).await?;
    if g.json {
        println!(
            "{}",
            json!({ "kind": wire_kind(kind), "summary": PlanCounts::of_steps(&steps), "steps": steps })
        );
    } else if steps.is_empty() {
        println!("Nothing to change.");
    } else {
        print!("{}", output::plan_table(&steps));
        println!("\n{}", PlanCounts::of_steps(&steps).summary());
    }
    Ok(exit::OK)
}

fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            exit::USAGE,
            "standard input is not a terminal, so pacsync cannot ask: pass --yes to apply without asking",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::new(exit::ERROR, e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Preview, ask, start the operation, follow its progress to the end.
pub async fn operate(
    d: &DaemonProxy<'_>,
    g: &Global,
    kind: &str,
    yes: bool,
    comment: &str,
) -> Result<u8, Failure> {
    let steps = d.preview(wire_kind(kind)).await?;
    if !g.json {
        if steps.is_empty() && kind != "set-latest" {
            println!("Nothing to change.");
            return Ok(exit::OK);
        }
        if !steps.is_empty() {
            print!("{}", output::plan_table(&steps));
            println!("\n{}", PlanCounts::of_steps(&steps).summary());
        }
    }
    if !yes {
        let question = match kind {
            "set-latest" => "Make this machine's packages the pool's new target?",
            "revert" => "Revert these changes?",
            _ => "Apply these changes?",
        };
        if !confirm(question)? {
            eprintln!("Nothing done.");
            return Ok(exit::ERROR);
        }
    }
    // Subscribe before starting, so no signal of this operation is missed.
    let mut progress = d.receive_operation_progress().await?;
    let mut finished = d.receive_operation_finished().await?;
    let id = match kind {
        "sync" => d.sync().await?,
        "revert" => d.revert().await?,
        _ => d.set_latest(comment).await?,
    };
    let bar = (!g.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut cancel_sent = false;
    let (outcome, message) = loop {
        tokio::select! {
            Some(p) = progress.next() => {
                if let Ok(a) = p.args() && a.operation_id == id {
                    if let Some(bar) = &bar {
                        bar.set_position(u64::from(a.percent));
                        bar.set_message(a.message.to_owned());
                    } else if !g.json {
                        eprintln!("{:>3}% {}", a.percent, a.message);
                    }
                }
            }
            Some(f) = finished.next() => {
                if let Ok(a) = f.args() && a.operation_id == id {
                    break (a.outcome.to_owned(), a.message.to_owned());
                }
            }
            r = tokio::signal::ctrl_c(), if !cancel_sent => {
                if r.is_ok() {
                    cancel_sent = true;
                    eprintln!("\nCancelling… (possible until pacman starts)");
                    if let Err(e) = d.cancel().await {
                        eprintln!("pacsync: cannot cancel: {e}");
                    }
                }
            }
            else => break ("failed".into(), "lost the connection to pacsyncd".into()),
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if g.json {
        println!(
            "{}",
            json!({ "operation_id": id, "kind": wire_kind(kind), "outcome": outcome, "message": message })
        );
    } else {
        println!("{}: {message}", outcome.replace('_', " "));
    }
    match outcome.as_str() {
        "succeeded" => Ok(exit::OK),
        _ => Ok(exit::ERROR),
    }
}

pub async fn cancel(d: &DaemonProxy<'_>, g: &Global) -> Result<u8, Failure> {
    d.cancel().await?;
    if g.json {
        println!("{}", json!({ "cancelled": true }));
    } else {
        println!("Cancellation requested.");
    }
    Ok(exit::OK)
}

pub async fn history(d: &DaemonProxy<'_>, g: &Global, limit: u32) -> Result<u8, Failure> {
    let entries = d.history(limit).await?;
    if g.json {
        println!("{}", json!(entries));
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        println!("No operations yet.");
    }
    for e in entries {
        println!(
            "{}  {:<10} {:<9} {:<10} {}",
            output::time(e.finished_at),
            e.kind,
            e.outcome,
            e.caller,
            e.message
        );
    }
    Ok(exit::OK)
}

pub async fn register(
    d: &DaemonProxy<'_>,
    g: &Global,
    server: &str,
    token: &str,
    name: Option<String>,
) -> Result<u8, Failure> {
    let name = name
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Failure::new(exit::USAGE, "no host name found: pass --name"))?;
    d.register(server, token, &name).await?;
    if g.json {
        println!(
            "{}",
            json!({ "registered": true, "server_url": server, "machine_name": name })
        );
    } else {
        println!("Registered as {name} with {server}.");
    }
    Ok(exit::OK)
}
