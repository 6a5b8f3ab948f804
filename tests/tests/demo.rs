//! `pacsync-demo --check`: the demo of the README starts a server and three
//! machines, enrolls them, prints how to reach each, and leaves nothing
//! behind.

use std::process::Command;

use pacsync_tests::require_pacman_sandbox;
use pacsync_tests::system_bus::SystemBus;

#[test]
fn the_demo_enrolls_three_machines_and_cleans_up() {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pacsync-demo"))
        .arg("--check")
        .output()
        .expect("run pacsync-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("check: the three machines are enrolled"),
        "{stdout}"
    );
    // One status line per machine, each with the command that reaches it.
    let mut sockets = Vec::new();
    for (name, status) in [
        ("alpha", "in_sync"),
        ("bravo", "diverged"),
        ("charlie", "behind"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name) && l.contains(" status"))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"));
        assert!(line.contains(status), "{line}");
        let socket = line
            .split("--bus unix:path=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no bus address in {line}"));
        sockets.push(socket.to_owned());
    }
    sockets.dedup();
    assert_eq!(sockets.len(), 3, "a bus per machine: {sockets:?}");
    // Cleaned up: the buses' directories are gone.
    for socket in sockets {
        assert!(!std::path::Path::new(&socket).exists(), "{socket} is left");
    }
}
