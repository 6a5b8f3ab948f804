//! pacsyncd following the server's push channel: operations an operator
//! requests through the API run on the machine, and targets set elsewhere
//! reach the daemon's Status without a Refresh — across a server restart.

mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use pacsync_tests::system_bus::eventually;
use serde_json::Value;

use world::{target_packages, world};

#[test]
fn a_sync_requested_through_the_api_runs_on_the_machine() {
    let Some(w) = world() else { return };
    w.set_target("reference", &target_packages());
    assert_eq!(w.status(), "diverged", "{}", w.home.log());
    let id = w.endpoint_id();

    let op = w
        .admin
        .call("POST", &format!("/api/endpoints/{id}/sync"), None)
        .expect("request a sync");
    let op_id = op["id"].as_str().expect("operation id").to_owned();
    let done: Value = eventually(Duration::from_secs(60), || {
        let op = w
            .admin
            .call("GET", &format!("/api/operations/{op_id}"), None)?;
        Ok(matches!(
            op["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
        .then_some(op))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", w.home.log()));
    assert_eq!(done["status"], "succeeded", "{done}\n{}", w.home.log());
    assert_eq!(done["progress"], 100, "{done}");

    let want: BTreeMap<String, String> = target_packages()
        .iter()
        .map(|(n, v, _)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(w.query(), want, "pacman -Q equals the target");
    eventually(Duration::from_secs(10), || {
        Ok((w.status() == "in_sync").then_some(()))
    })
    .expect("the daemon says in_sync");
    let (_, history) = w.json(&["history", "--json"]);
    assert_eq!(history[0]["id"], op_id.as_str(), "{history}");
    assert_eq!(history[0]["outcome"], "succeeded", "{history}");
    assert!(
        history[0]["caller"]
            .as_str()
            .is_some_and(|c| c.starts_with("server: ")),
        "{history}"
    );
    eventually(Duration::from_secs(10), || {
        let ep = w.admin.call("GET", &format!("/api/endpoints/{id}"), None)?;
        Ok((ep["status"] == "in_sync").then_some(()))
    })
    .expect("the server says in_sync");

    // The daemon's reports carried its repository too (hash, then content).
    let repos = w
        .admin
        .call("GET", "/api/repositories", None)
        .expect("repositories");
    let test = repos["items"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "test"))
        .unwrap_or_else(|| panic!("{repos}\n{}", w.home.log()));
    assert_eq!(test["package_count"], 4, "{test}");
    assert_eq!(test["machines"], 1, "{test}");
}

#[test]
fn targets_set_elsewhere_reach_the_status_without_a_refresh() {
    let Some(mut w) = world() else { return };
    let bar = w.waybar();
    bar.wait_class("no_target", Duration::from_secs(10))
        .expect("no target yet");
    eventually(Duration::from_secs(20), || {
        Ok((w.push_sessions() >= 1).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", w.home.log()));

    // Another machine makes the daemon's own packages the target.
    let current = [
        ("alpha", "1.0-1", true),
        ("beta", "2.0-1", true),
        ("delta", "1.0-1", true),
    ];
    w.publish_target("reference", &current);
    bar.wait_class("in_sync", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", w.home.log()));

    // The server restarts; the daemon reconnects by itself and the next
    // target still arrives by push.
    w.server.restart().expect("restart the server");
    eventually(Duration::from_secs(30), || {
        Ok((w.push_sessions() >= 2).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", w.home.log()));
    w.publish_target("reference-2", &target_packages());
    let line = bar
        .wait_class("diverged", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", w.home.log()));
    assert!(
        line["tooltip"].as_str().is_some_and(|t| !t.is_empty()),
        "{line}"
    );
    let (_, status) = w.json(&["status", "--json"]);
    assert_eq!(status["status"], "diverged", "{status}");
}
