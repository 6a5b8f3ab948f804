//! The files shipped around the daemon: the systemd unit and the pacman
//! hook.

use std::path::{Path, PathBuf};
use std::process::Command;

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::system_bus::SystemBus;
use pacsync_tests::{Sandbox, require_pacman_sandbox};

const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `key=value` lines of an INI-like file (unit, hook, activation file),
/// every section together.
fn values(text: &str, key: &str, sep: char) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(sep))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_leaves_pacman_its_system() {
    let unit = std::fs::read_to_string(repo_file("systemd/pacsyncd.service")).expect("unit");
    let activation =
        std::fs::read_to_string(repo_file("dbus/org.pacsync.Daemon1.service")).expect("activation");
    assert_eq!(values(&unit, "Type", '='), ["dbus"]);
    assert_eq!(values(&unit, "BusName", '='), [pacsync_dbus::BUS_NAME]);
    assert_eq!(values(&activation, "Name", '='), [pacsync_dbus::BUS_NAME]);
    assert_eq!(
        values(&activation, "SystemdService", '='),
        ["pacsyncd.service"]
    );
    assert_eq!(
        values(&unit, "ExecStart", '='),
        values(&activation, "Exec", '=')
    );
    // A stopped daemon must not take a running pacman down with it.
    assert_eq!(values(&unit, "KillMode", '='), ["process"]);
    // pacman writes /usr, /etc and /boot, creates device-touching hooks'
    // files and installs setuid binaries.
    for (key, forbidden) in [
        ("ProtectSystem", &["yes", "full", "strict"][..]),
        ("PrivateDevices", &["yes"][..]),
        ("ProtectKernelModules", &["yes"][..]),
        ("RestrictSUIDSGID", &["yes"][..]),
        ("ReadOnlyPaths", &["/", "/usr"][..]),
    ] {
        for v in values(&unit, key, '=') {
            assert!(!forbidden.contains(&v.as_str()), "{key}={v} stops pacman");
        }
    }

    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("SKIPPED: systemd-analyze not installed; the unit was not verified");
        return;
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = pacsync_tests::ScratchDir::new("unit").expect("dir");
    let path = dir.path().join("pacsyncd.service");
    std::fs::write(&path, unit.replace("/usr/bin/pacsyncd", DAEMON)).expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("pacsyncd.service"), "{stderr}");
}

#[test]
fn the_pacman_hook_reaches_the_daemon() {
    let hook = std::fs::read_to_string(repo_file("alpm/pacsync.hook")).expect("hook");
    let operations = values(&hook, "Operation", '=');
    for op in ["Install", "Upgrade", "Remove"] {
        assert!(operations.iter().any(|o| o == op), "{op} in {operations:?}");
    }
    assert_eq!(values(&hook, "Type", '='), ["Package"]);
    assert_eq!(values(&hook, "Target", '='), ["*"]);
    assert_eq!(values(&hook, "When", '='), ["PostTransaction"]);
    let exec = values(&hook, "Exec", '=');
    assert_eq!(exec.len(), 1, "{exec:?}");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/busctl");
    assert!(argv.contains(&"--expect-reply=no"), "pacman must not wait");

    if !require_pacman_sandbox() || !SystemBus::available() || !Path::new(argv[0]).exists() {
        return;
    }
    let bus = SystemBus::start().expect("bus");
    let sandbox = Sandbox::new(&[]).expect("sandbox");
    let home = DaemonHome::new(&sandbox).expect("home");
    let _daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home).expect("daemon");
    // As pacman runs it, and once more awaiting the reply, which proves
    // the name, path, interface and method are the daemon's.
    for args in [
        argv[1..].to_vec(),
        argv[1..]
            .iter()
            .copied()
            .filter(|a| *a != "--expect-reply=no")
            .collect(),
    ] {
        let out = Command::new(argv[0])
            .args(&args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .output()
            .expect("busctl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
