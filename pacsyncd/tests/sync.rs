//! pacsyncd with real parts: a sandboxed pacman root with a file://
//! repository, a private system bus with polkitd, a real pacsync-server,
//! and the `pacsync` CLI as the user's hands.

mod world;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pacsync_tests::daemon_process::DaemonProcess;
use pacsync_tests::{PackageSpec, ScratchDir};

use world::{DAEMON, stderr, target_packages, world};

#[test]
fn sync_then_revert_with_every_kind_of_change() {
    let Some(w) = world() else { return };
    let before = w.query();
    w.set_target("reference", &target_packages());
    assert_eq!(w.status(), "diverged", "{}", w.home.log());

    let (code, plan) = w.json(&["plan", "--json"]);
    assert_eq!(code, Some(0));
    let s = &plan["summary"];
    assert_eq!(
        (
            &s["install"],
            &s["upgrade"],
            &s["downgrade"],
            &s["remove"],
            &s["reason_change"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into(), &1.into()),
        "{plan}"
    );

    let (code, done) = w.json(&["sync", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{done}\n{}", w.home.log());
    assert_eq!(done["outcome"], "succeeded");
    let want: BTreeMap<String, String> = target_packages()
        .iter()
        .map(|(n, v, _)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(w.query(), want, "pacman -Q equals the target");
    assert!(
        w.sandbox
            .query_dependencies()
            .expect("-Qd")
            .contains_key("gamma")
    );
    let (code, status) = w.json(&["status", "--json"]);
    assert_eq!(
        (code, status["status"].as_str()),
        (Some(0), Some("in_sync"))
    );
    assert!(status["last_sync"].as_i64().unwrap_or(0) > 0);

    let (code, reverted) = w.json(&["revert", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{reverted}\n{}", w.home.log());
    assert_eq!(
        w.query(),
        before,
        "revert restores the state before the sync"
    );
    assert_eq!(w.status(), "diverged");

    let (_, history) = w.json(&["history", "--json"]);
    let kinds: Vec<&str> = history
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["revert", "sync"]);
}

#[test]
fn a_sync_whose_files_are_missing_changes_nothing() {
    let Some(w) = world() else { return };
    let before = w.query();
    w.set_target(
        "reference",
        &[
            ("alpha", "3.0-1", true),
            ("beta", "2.0-1", true),
            ("delta", "1.0-1", true),
        ],
    );
    let (code, done) = w.json(&["sync", "--yes", "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(done["outcome"], "failed");
    let message = done["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("alpha 3.0-1") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(w.query(), before);
    let (_, status) = w.json(&["status", "--json"]);
    assert_eq!(status["status"], "error");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("alpha 3.0-1"))
    );
}

#[test]
fn a_pacman_failure_leaves_the_system_as_it_was() {
    let Some(w) = world() else { return };
    // epsilon owns a file that alpha also owns: pacman refuses the
    // transaction at its file-conflict check.
    let files = ScratchDir::new("conflicting").expect("dir");
    let epsilon = PackageSpec::new("epsilon", "1.0-1")
        .file("usr/share/alpha/version", b"mine")
        .build(files.path())
        .expect("epsilon");
    std::fs::copy(
        &epsilon,
        w.sandbox
            .cache_dir()
            .join(epsilon.file_name().expect("name")),
    )
    .expect("cache");
    let before = w.query();
    // epsilon is in no repository the machine reported, so the pool's
    // repository analysis would leave it out: an admin includes it.
    let pools = w.admin.call("GET", "/api/pools", None).expect("pools");
    let pool = pools["items"][0]["id"]
        .as_str()
        .expect("pool id")
        .to_owned();
    w.admin
        .call(
            "PATCH",
            &format!("/api/pools/{pool}"),
            Some(serde_json::json!({ "repository_overrides": { "include": ["epsilon"] } })),
        )
        .expect("include epsilon");
    w.set_target(
        "reference",
        &[
            ("alpha", "1.0-1", true),
            ("beta", "2.0-1", true),
            ("delta", "1.0-1", true),
            ("epsilon", "1.0-1", true),
        ],
    );
    let (code, done) = w.json(&["sync", "--yes", "--json"]);
    assert_eq!(code, Some(1), "{done}");
    assert!(
        done["message"]
            .as_str()
            .is_some_and(|m| m.contains("conflict")),
        "{done}"
    );
    assert_eq!(w.query(), before);
}

#[test]
fn manual_changes_and_an_absent_server_move_the_status() {
    let Some(mut w) = world() else { return };
    let current: Vec<(&str, &str, bool)> = vec![
        ("alpha", "1.0-1", true),
        ("beta", "2.0-1", true),
        ("delta", "1.0-1", true),
    ];
    w.set_target("reference", &current);
    assert_eq!(w.status(), "in_sync", "{}", w.home.log());
    let bar = w.waybar();
    bar.wait_class("in_sync", Duration::from_secs(5))
        .expect("WayBar line");

    // A package installed by hand: a new WayBar line within half a
    // second of pacman's end, no Refresh.
    w.sandbox.install(&["gamma"]).expect("pacman -S gamma");
    bar.wait_class("ahead", Duration::from_millis(500))
        .expect("WayBar line");
    w.sandbox.remove(&["gamma"]).expect("pacman -R gamma");
    bar.wait_class("in_sync", Duration::from_millis(500))
        .expect("WayBar line");

    // The server goes away: the daemon keeps its cached status as offline.
    w.server.kill().expect("kill server");
    let out = w.bus.call_daemon(None, "Refresh", &[]).expect("refresh");
    assert!(out.status.success());
    let offline = bar
        .wait_class("offline", Duration::from_secs(5))
        .expect("WayBar line");
    assert!(
        offline["tooltip"]
            .as_str()
            .is_some_and(|t| t.contains("Last known: in sync")),
        "{offline}"
    );
    // Changes made meanwhile are not lost: they reach the server once it is back.
    w.sandbox.install(&["gamma"]).expect("pacman -S gamma");
    w.server.restart().expect("restart server");
    bar.wait_class("ahead", Duration::from_secs(10))
        .expect("WayBar line");
    let endpoints = w.admin.call("GET", "/api/endpoints", None).expect("list");
    let bravo = endpoints["items"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "bravo"))
        .cloned()
        .expect("bravo on the server");
    assert_eq!(
        bravo["status"], "ahead",
        "the server has the state made while it was down"
    );
}

#[test]
fn the_daemon_killed_mid_sync_restarts_into_a_correct_status() {
    let Some(mut w) = world() else { return };
    w.set_target("reference", &target_packages());
    let bar = w.waybar();
    let out = w.bus.call_daemon(None, "Sync", &[]).expect("sync");
    assert!(out.status.success(), "{}", stderr(&out));
    bar.wait_class("syncing", Duration::from_secs(5))
        .expect("WayBar line");
    w.daemon.take().expect("daemon").kill().expect("SIGKILL");
    // Its name is gone from the bus before the new one takes it.
    bar.wait_class("unavailable", Duration::from_secs(5))
        .expect("WayBar line");
    // pacman, if it had started, finishes on its own: wait for its lock to go.
    let lock = w.sandbox.dbpath().join("db.lck");
    pacsync_tests::system_bus::eventually(Duration::from_secs(30), || {
        Ok((!lock.exists()).then_some(()))
    })
    .expect("pacman finished");
    w.daemon = Some(DaemonProcess::start(Path::new(DAEMON), &w.bus, &w.home).expect("restart"));
    // Whatever pacman got done, the status must match the packages.
    let deps = w.sandbox.query_dependencies().expect("-Qd");
    let state: pacsync_core::state::PackageState = w
        .query()
        .into_iter()
        .map(|(name, version)| pacsync_core::package::Package {
            reason: if deps.contains_key(&name) {
                pacsync_core::package::InstallReason::Dependency
            } else {
                pacsync_core::package::InstallReason::Explicit
            },
            name,
            version: version.into(),
            arch: "any".into(),
            origin: None,
            installed_size: 0,
            depends: Vec::new(),
        })
        .collect();
    let target: pacsync_core::state::TargetState = target_packages()
        .iter()
        .map(|(n, v, explicit)| {
            let reason = if *explicit {
                pacsync_core::package::InstallReason::Explicit
            } else {
                pacsync_core::package::InstallReason::Dependency
            };
            (
                (*n).to_owned(),
                pacsync_core::state::TargetEntry {
                    version: (*v).into(),
                    reason,
                },
            )
        })
        .collect();
    let plan = pacsync_core::plan::plan(&state, &target, &Default::default());
    let expected = pacsync_core::status::EndpointStatus::from(pacsync_core::status::drift(&plan));
    // Offline until the restarted daemon has reached the server.
    let status = pacsync_tests::system_bus::eventually(Duration::from_secs(10), || {
        let (_, status) = w.json(&["status", "--json"]);
        Ok((status["status"] != "offline").then_some(status))
    })
    .expect("the daemon reaches the server");
    assert_eq!(
        status["status"],
        expected.as_str(),
        "{status}\n{}",
        w.home.log()
    );
    let (_, history) = w.json(&["history", "--json"]);
    assert_eq!(history[0]["outcome"], "failed", "{history}");
}
