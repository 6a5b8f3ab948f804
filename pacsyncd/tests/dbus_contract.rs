//! The daemon on a private system bus with a real polkitd: its interface is
//! the documented XML, reads need no authorization, and every changing verb
//! asks polkit about the caller.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::system_bus::{PolkitGrant, SystemBus, TestUser, eventually, project_dir};
use pacsync_tests::{Sandbox, require_pacman_sandbox};

const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");

fn start() -> Option<(SystemBus, Sandbox, DaemonHome, DaemonProcess)> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let bus = SystemBus::start().expect("private system bus");
    let sandbox = Sandbox::new(&[]).expect("sandbox");
    let home = DaemonHome::new(&sandbox).expect("daemon home");
    let daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home).expect("daemon");
    Some((bus, sandbox, home, daemon))
}

/// Members of org.pacsync.Daemon1 as `kind name signature` lines.
fn members(xml: &str) -> BTreeSet<String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options).expect("valid XML");
    let iface = doc
        .descendants()
        .find(|n| n.has_tag_name("interface") && n.attribute("name") == Some("org.pacsync.Daemon1"))
        .expect("interface org.pacsync.Daemon1");
    let mut out = BTreeSet::new();
    for m in iface.children().filter(roxmltree::Node::is_element) {
        let name = m.attribute("name").unwrap_or_default();
        let line = match m.tag_name().name() {
            "property" => format!(
                "property {name} {} {}",
                m.attribute("type").unwrap_or_default(),
                m.attribute("access").unwrap_or_default()
            ),
            kind @ ("method" | "signal") => {
                let args: Vec<String> = m
                    .children()
                    .filter(|a| a.has_tag_name("arg"))
                    .map(|a| {
                        format!(
                            "{}:{}",
                            a.attribute("direction").unwrap_or(if kind == "signal" {
                                "out"
                            } else {
                                "in"
                            }),
                            a.attribute("type").unwrap_or_default()
                        )
                    })
                    .collect();
                format!("{kind} {name} {}", args.join(","))
            }
            _ => continue,
        };
        out.insert(line);
    }
    out
}

#[test]
fn running_daemon_matches_the_documented_interface() {
    let Some((bus, _sandbox, home, _daemon)) = start() else {
        return;
    };
    let mut cmd = bus.gdbus(None);
    cmd.args([
        "introspect",
        "--address",
        bus.address(),
        "--dest",
        "org.pacsync.Daemon1",
        "--object-path",
        "/org/pacsync/Daemon1",
        "--xml",
    ]);
    let out = pacsync_tests::command::run(&mut cmd).expect("introspection");
    let live = members(&String::from_utf8_lossy(&out.stdout));
    let documented = members(
        &std::fs::read_to_string(project_dir().join("dbus/org.pacsync.Daemon1.xml"))
            .expect("the XML"),
    );
    assert!(
        documented.len() > 20,
        "the XML lists the interface: {documented:?}"
    );
    assert_eq!(live, documented, "daemon log:\n{}", home.log());
}

fn error_name(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("GDBus.Error:"))
        .map(|w| w.trim_end_matches(':').to_owned())
        .unwrap_or_else(|| {
            format!(
                "<no error: {}>",
                String::from_utf8_lossy(&out.stdout).trim()
            )
        })
}

const NOT_AUTHORIZED: &str = "org.pacsync.Daemon1.Error.NotAuthorized";
const NOT_REGISTERED: &str = "org.pacsync.Daemon1.Error.NotRegistered";

fn changing_calls() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("Sync", vec![]),
        ("SetLatest", vec!["'a comment'"]),
        ("Revert", vec![]),
        (
            "Register",
            vec!["'http://127.0.0.1:9'", "'token'", "'machine'"],
        ),
        ("Configure", vec!["{'machine_name': 'x'}"]),
    ]
}

#[test]
fn polkit_decides_about_the_caller_for_every_changing_verb() {
    let Some((bus, _sandbox, home, _daemon)) = start() else {
        return;
    };
    let user = TestUser::ensure("pacsynct-polkit").expect("test user");

    // Reads and Preview need no authorization: the user gets the status and
    // the preview's own error, never NotAuthorized.
    let get = bus
        .call_daemon(Some(&user), "Preview", &["sync"])
        .expect("preview call");
    assert_eq!(error_name(&get), NOT_REGISTERED);
    let mut props = bus.gdbus(Some(&user));
    props.args([
        "call",
        "--address",
        bus.address(),
        "--dest",
        "org.pacsync.Daemon1",
        "--object-path",
        "/org/pacsync/Daemon1",
        "--method",
        "org.freedesktop.DBus.Properties.Get",
        "org.pacsync.Daemon1",
        "Status",
    ]);
    let status = pacsync_tests::command::run(&mut props).expect("property read as a user");
    assert!(String::from_utf8_lossy(&status.stdout).contains("unregistered"));

    // The daemon runs as root: had it asked polkit about itself, these
    // would pass. They are refused, so polkit judged the caller.
    for (method, args) in changing_calls() {
        let out = bus.call_daemon(Some(&user), method, &args).expect("call");
        assert_eq!(
            error_name(&out),
            NOT_AUTHORIZED,
            "{method} as an unprivileged user; log:\n{}",
            home.log()
        );
    }
    // Root is allowed past polkit (and then fails for want of a server).
    let out = bus.call_daemon(None, "Sync", &[]).expect("call");
    assert_eq!(error_name(&out), NOT_REGISTERED);

    // A rules file granting the user's group lets the same user through.
    let _grant = PolkitGrant::for_group(&user.name).expect("rules file");
    eventually(Duration::from_secs(10), || {
        let out = bus.call_daemon(Some(&user), "Sync", &[])?;
        Ok((error_name(&out) == NOT_REGISTERED).then_some(()))
    })
    .expect("polkitd reloads the rules and allows the group");
    for (method, args) in changing_calls() {
        let out = bus.call_daemon(Some(&user), method, &args).expect("call");
        assert_ne!(
            error_name(&out),
            NOT_AUTHORIZED,
            "{method} with the group granted"
        );
    }
}

#[test]
fn only_root_may_own_the_name() {
    let Some((bus, _sandbox, _home, _daemon)) = start() else {
        return;
    };
    let user = TestUser::ensure("pacsynct-owner").expect("test user");
    let dir = pacsync_tests::ScratchDir::new("pacsyncd-user").expect("dir");
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
    let config = dir.path().join("pacsyncd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .expect("config");
    // A pacsyncd started by a user is refused the name by the bus policy.
    let mut cmd = std::process::Command::new(DAEMON);
    std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
    std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .arg("--config")
        .arg(&config);
    let out = pacsync_tests::command::run_unchecked(&mut cmd).expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot own org.pacsync.Daemon1"),
        "{stderr}"
    );
}
