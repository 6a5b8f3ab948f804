//! The `pacsync` command against a real pacsyncd on a private system bus
//! with a real polkitd: output, JSON shapes and exit codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::system_bus::{SystemBus, TestUser};
use pacsync_tests::waybar_stream::WaybarStream;
use pacsync_tests::{Sandbox, require_pacman_sandbox};
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_pacsync");

fn daemon_binary() -> std::path::PathBuf {
    // pacsyncd is another package's binary: cargo builds it into the same
    // target directory as this test's own binary.
    let me = Path::new(CLI);
    let path = me.with_file_name("pacsyncd");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p pacsyncd)",
        path.display()
    );
    path
}

fn start() -> Option<(SystemBus, Sandbox, DaemonHome, DaemonProcess)> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let bus = SystemBus::start().expect("private system bus");
    let sandbox = Sandbox::new(&[]).expect("sandbox");
    let home = DaemonHome::new(&sandbox).expect("daemon home");
    let daemon = DaemonProcess::start(&daemon_binary(), &bus, &home).expect("daemon");
    Some((bus, sandbox, home, daemon))
}

fn pacsync(bus: &SystemBus, user: Option<&TestUser>, args: &[&str]) -> Output {
    let mut cmd = Command::new(CLI);
    cmd.args(["--bus", bus.address()])
        .args(args)
        .stdin(Stdio::null());
    if let Some(u) = user {
        std::os::unix::process::CommandExt::uid(&mut cmd, u.uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, u.gid);
    }
    cmd.output().expect("run pacsync")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn status_plan_history_and_their_exit_codes() {
    let Some((bus, _sandbox, home, _daemon)) = start() else {
        return;
    };
    let out = pacsync(&bus, None, &["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not in sync → 3; log:\n{}",
        home.log()
    );
    let s = json(&out);
    assert_eq!(s["status"], "unregistered");
    for key in [
        "pool",
        "target",
        "plan_summary",
        "last_sync",
        "last_report",
        "last_error",
        "server_url",
    ] {
        assert!(s.get(key).is_some(), "status JSON has {key}: {s}");
    }
    let text = pacsync(&bus, None, &["status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Status:      unregistered"));
    // The script flag is the same command.
    assert_eq!(
        pacsync(&bus, None, &["--status", "--json"]).stdout,
        out.stdout
    );

    let plan = pacsync(&bus, None, &["plan", "--json"]);
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        json(&plan)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not enrolled"))
    );

    let history = pacsync(&bus, None, &["history", "--json"]);
    assert_eq!(history.status.code(), Some(0));
    assert_eq!(json(&history), serde_json::json!([]));
}

#[test]
fn refusals_and_usage_errors() {
    let Some((bus, _sandbox, _home, _daemon)) = start() else {
        return;
    };
    let user = TestUser::ensure("pacsynct-cli").expect("test user");
    // polkit refuses an unprivileged user: exit 5, a human message, no backtrace.
    let out = pacsync(
        &bus,
        Some(&user),
        &[
            "register",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--name",
            "m",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("pacsync: not authorized"), "{err}");
    assert!(!err.contains("panicked"));
    // Sync without a terminal and without --yes cannot ask: usage error.
    let out = pacsync(&bus, None, &["sync"]);
    assert_ne!(out.status.code(), Some(0));
    // Unknown flags are usage errors.
    assert_eq!(pacsync(&bus, None, &["--bogus"]).status.code(), Some(2));
}

#[test]
fn missing_daemon_is_exit_4() {
    if !SystemBus::available() {
        return;
    }
    let bus = SystemBus::start().expect("bus");
    let out = pacsync(&bus, None, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("pacsyncd is not reachable"));
    let out = Command::new(CLI)
        .args(["--bus", "unix:path=/nonexistent/socket", "status"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn completions_and_man_page() {
    let out = Command::new(CLI)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("set-latest"));
    let out = Command::new(CLI).arg("man").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH pacsync"));
}

#[test]
fn waybar_survives_the_daemon_restarting() {
    let Some((bus, _sandbox, home, daemon)) = start() else {
        return;
    };
    let lines = WaybarStream::start(Path::new(CLI), bus.address()).expect("waybar mode");
    let first = lines
        .next(Duration::from_secs(10))
        .expect("a line at start");
    assert_eq!(first["class"], "unregistered");
    for key in ["text", "alt", "class", "tooltip", "percentage"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    daemon.kill().expect("kill the daemon");
    let gone = lines
        .next(Duration::from_secs(5))
        .expect("a line when the daemon leaves");
    assert_eq!(gone["class"], "unavailable");
    let _again = DaemonProcess::start(&daemon_binary(), &bus, &home).expect("daemon again");
    let back = lines
        .next(Duration::from_secs(5))
        .expect("a line when it is back");
    assert_eq!(back["class"], "unregistered");
}
