//! pacsyncd with real parts: a sandboxed pacman root with a file://
//! repository, a private system bus with polkitd, a real pacsync-server,
//! and the `pacsync` CLI as the user's hands.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::server_process::{ApiClient, ServerProcess, sibling_binary};
use pacsync_tests::system_bus::SystemBus;
use pacsync_tests::{PackageSpec, Repo, Sandbox, ScratchDir, require_pacman_sandbox};
use serde_json::Value;

const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");

struct World {
    bus: SystemBus,
    server: ServerProcess,
    admin: ApiClient,
    token: String,
    sandbox: Sandbox,
    home: DaemonHome,
    daemon: Option<DaemonProcess>,
    _files: ScratchDir,
    _repo: Repo,
}

fn spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec::new(name, version).file(format!("usr/share/{name}/version"), version.as_bytes())
}

/// A machine with alpha 1.0, beta 2.0 and delta 1.0 installed; the
/// repository offers alpha 2.0, beta 2.0, gamma 1.0 and delta 1.0; the
/// pacman cache also holds alpha 1.0 and beta 1.0 (as after earlier
/// installs). Registered with a server whose pool "office" has no target.
fn world() -> Option<World> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let repo = Repo::new("test").expect("repo");
    repo.add(&[
        spec("alpha", "2.0-1"),
        spec("beta", "2.0-1"),
        spec("gamma", "1.0-1"),
        spec("delta", "1.0-1"),
    ])
    .expect("repo-add");
    let files = ScratchDir::new("old-packages").expect("dir");
    let alpha1 = spec("alpha", "1.0-1")
        .build(files.path())
        .expect("alpha 1.0");
    let beta1 = spec("beta", "1.0-1").build(files.path()).expect("beta 1.0");
    let sandbox = Sandbox::new(&[&repo]).expect("sandbox");
    sandbox.sync_dbs().expect("-Syy");
    sandbox.install_files(&[&alpha1]).expect("alpha 1.0");
    sandbox.install(&["beta", "delta"]).expect("beta, delta");
    for f in [&alpha1, &beta1] {
        std::fs::copy(
            f,
            sandbox.cache_dir().join(f.file_name().expect("file name")),
        )
        .expect("into the cache");
    }

    let bus = SystemBus::start().expect("bus");
    let server = ServerProcess::start(&sibling_binary(DAEMON, "pacsync-server")).expect("server");
    let admin = server.admin_client().expect("admin");
    let (_pool, token) = admin.pool_with_token("office").expect("pool");
    let home = DaemonHome::new(&sandbox).expect("home");
    let daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home).expect("daemon");
    let w = World {
        bus,
        server,
        admin,
        token,
        sandbox,
        home,
        daemon: Some(daemon),
        _files: files,
        _repo: repo,
    };
    let out = w.pacsync(&[
        "register",
        "--server",
        &w.server.url(),
        "--token",
        &w.token,
        "--name",
        "bravo",
    ]);
    assert!(
        out.status.success(),
        "register: {}\n{}",
        stderr(&out),
        w.home.log()
    );
    Some(w)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cli() -> PathBuf {
    sibling_binary(DAEMON, "pacsync")
}

impl World {
    fn pacsync(&self, args: &[&str]) -> Output {
        Command::new(cli())
            .args(["--bus", self.bus.address()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pacsync")
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value) {
        let out = self.pacsync(args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out),
                self.home.log()
            )
        });
        (out.status.code(), v)
    }

    fn status(&self) -> String {
        self.json(&["status", "--json"]).1["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Make `packages` the pool's target through another (API) machine.
    fn set_target(&self, name: &str, packages: &[(&str, &str, bool)]) {
        let m = self
            .admin
            .register_machine(&self.token, name)
            .expect("reference machine");
        m.report(packages).expect("report");
        m.set_latest("the office baseline").expect("set-latest");
        // The daemon learns of it at its next report.
        let out = self.bus.call_daemon(None, "Refresh", &[]).expect("refresh");
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn query(&self) -> BTreeMap<String, String> {
        self.sandbox.query().expect("pacman -Q")
    }

    fn waybar(&self) -> (std::process::Child, mpsc::Receiver<Value>) {
        let mut child = Command::new(cli())
            .args(["--bus", self.bus.address(), "waybar"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("waybar");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx
                    .send(serde_json::from_str::<Value>(&line).expect("JSON line"))
                    .is_err()
                {
                    break;
                }
            }
        });
        (child, rx)
    }
}

/// Wait for a WayBar line whose class is `class`.
fn wait_class(lines: &mpsc::Receiver<Value>, class: &str, within: Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(v) if v["class"] == class => return v,
            Ok(_) => {}
            Err(_) => panic!("no line with class {class} within {within:?}"),
        }
    }
}

fn target_packages() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("alpha", "2.0-1", true),
        ("beta", "1.0-1", true),
        ("gamma", "1.0-1", false),
    ]
}

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
    let (mut bar, lines) = w.waybar();
    wait_class(&lines, "in_sync", Duration::from_secs(5));

    // A package installed by hand: ahead within a second, no Refresh.
    w.sandbox.install(&["gamma"]).expect("pacman -S gamma");
    wait_class(&lines, "ahead", Duration::from_secs(1));
    w.sandbox.remove(&["gamma"]).expect("pacman -R gamma");
    wait_class(&lines, "in_sync", Duration::from_secs(1));

    // The server goes away: the daemon keeps its cached status as offline.
    w.server.kill().expect("kill server");
    let out = w.bus.call_daemon(None, "Refresh", &[]).expect("refresh");
    assert!(out.status.success());
    let offline = wait_class(&lines, "offline", Duration::from_secs(5));
    assert!(
        offline["tooltip"]
            .as_str()
            .is_some_and(|t| t.contains("Last known: in sync")),
        "{offline}"
    );
    // Changes made meanwhile are not lost: they reach the server once it is back.
    w.sandbox.install(&["gamma"]).expect("pacman -S gamma");
    w.server.restart().expect("restart server");
    wait_class(&lines, "ahead", Duration::from_secs(10));
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
    let _ = bar.kill();
    let _ = bar.wait();
}

#[test]
fn the_daemon_killed_mid_sync_restarts_into_a_correct_status() {
    let Some(mut w) = world() else { return };
    w.set_target("reference", &target_packages());
    let (mut bar, lines) = w.waybar();
    let out = w.bus.call_daemon(None, "Sync", &[]).expect("sync");
    assert!(out.status.success(), "{}", stderr(&out));
    wait_class(&lines, "syncing", Duration::from_secs(5));
    w.daemon.take().expect("daemon").kill().expect("SIGKILL");
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
    let (_, status) = w.json(&["status", "--json"]);
    assert_eq!(
        status["status"],
        expected.as_str(),
        "{status}\n{}",
        w.home.log()
    );
    let (_, history) = w.json(&["history", "--json"]);
    assert_eq!(history[0]["outcome"], "failed", "{history}");
    let _ = bar.kill();
    let _ = bar.wait();
}
