//! pacsync-gtk under Xvfb against a real pacsyncd on a private system bus
//! (with polkitd) managing a sandboxed machine that reports to a real
//! server. The test drives the window through its automation socket
//! (`PACSYNC_GTK_CONTROL`): it clicks the same buttons a user clicks and
//! reads what the widgets show; screenshots of the main states go to
//! `target/artifacts/`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pacsync_tests::ScratchDir;
use pacsync_tests::desktop::{ManagedMachine, SessionBus, Xvfb, artifacts_dir};
use pacsync_tests::server_process::sibling_binary;
use serde_json::Value;

const GTK: &str = env!("CARGO_BIN_EXE_pacsync-gtk");

struct Window {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    log: PathBuf,
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Window {
    fn start(
        machine: &ManagedMachine,
        x: &Xvfb,
        session: &SessionBus,
        dir: &Path,
        theme: Option<&str>,
    ) -> Window {
        let socket = dir.join(format!("control-{}", theme.unwrap_or("default")));
        let log = dir.join(format!("gtk-{}.log", theme.unwrap_or("default")));
        let mut cmd = Command::new(GTK);
        cmd.arg("--bus")
            .arg(machine.bus.address())
            .arg("--icon-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/icons"))
            .env("DISPLAY", x.display())
            .env("DBUS_SESSION_BUS_ADDRESS", session.address())
            .env("XDG_RUNTIME_DIR", dir)
            .env("HOME", dir)
            .env("GSK_RENDERER", "cairo")
            .env("GTK_A11Y", "none")
            .env("NO_AT_BRIDGE", "1")
            .env("LC_ALL", "C.UTF-8")
            .env("PACSYNC_GTK_CONTROL", &socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        if let Some(t) = theme {
            cmd.env("GTK_THEME", t);
        }
        let child = cmd.spawn().expect("start pacsync-gtk");
        let stream = wait_for(Duration::from_secs(30), "the control socket", || {
            UnixStream::connect(&socket).ok()
        });
        Window {
            child,
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            log,
        }
    }

    fn send(&mut self, line: &str) -> Value {
        writeln!(self.writer, "{line}").expect("send");
        let mut reply = String::new();
        self.reader.read_line(&mut reply).expect("reply");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{line}: {e}: {reply:?}"))
    }

    fn ok(&mut self, line: &str) {
        let r = self.send(line);
        assert_eq!(r["ok"], true, "{line}: {r}\n{}", self.log());
    }

    fn state(&mut self) -> Value {
        self.send("state")
    }

    /// Poll the window's state until `f` accepts it.
    fn wait(&mut self, within: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.state();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; the window shows {s:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn screenshot(&mut self, to: &Path) {
        self.ok(&format!("screenshot {}", to.display()));
        let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 5_000,
            "{} is a real picture ({size} bytes)",
            to.display()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows(s: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(s["plan"].clone()).unwrap_or_default()
}

#[test]
fn the_window_shows_the_plan_syncs_cancels_and_follows_the_daemon() {
    if !ManagedMachine::available()
        || !Xvfb::available()
        || !pacsync_tests::require_binary("dbus-daemon")
    {
        return;
    }
    let mut machine = ManagedMachine::start(
        &sibling_binary(GTK, "pacsyncd"),
        &sibling_binary(GTK, "pacsync-server"),
    )
    .expect("a registered machine");
    let x = Xvfb::start().expect("Xvfb");
    let dir = ScratchDir::new("pacsync-gtk").expect("dir");
    let session = SessionBus::start(dir.path(), None).expect("session bus");
    let shots = artifacts_dir(GTK);
    let mut w = Window::start(&machine, &x, &session, dir.path(), None);

    // The plan of the sandboxed machine, as a table.
    let s = w.wait(Duration::from_secs(45), "the plan", |s| {
        s["status"] == "behind" && rows(s).len() == 2
    });
    assert_eq!(s["status_text"], "Behind — 1 to install, 1 to upgrade");
    assert_eq!(s["icon"], "pacsync-behind");
    assert_eq!(s["pool"], "office");
    let details = s["details"].as_str().unwrap_or_default();
    assert!(details.contains("Pool: office"), "{details}");
    assert!(details.contains("set from reference on "), "{details}");
    assert!(details.contains("“the office baseline”"), "{details}");
    let plan = rows(&s);
    assert_eq!(plan[0][..3], ["alpha", "1.0-1", "2.0-1"]);
    assert_eq!(plan[0][3], "upgrade");
    assert_eq!(plan[1][..3], ["gamma", "—", "1.0-1"]);
    assert_eq!(plan[1][3], "install");
    assert_eq!(s["buttons"]["sync"], true);
    assert_eq!(s["buttons"]["revert"], false, "nothing to revert yet");

    // Sortable and filterable.
    w.ok("sort Package desc");
    assert_eq!(rows(&w.state())[0][0], "gamma");
    w.ok("sort Action asc");
    assert_eq!(rows(&w.state())[0][3], "install");
    w.ok("sort Package asc");
    w.ok("filter upgr");
    let s = w.state();
    assert_eq!(rows(&s).len(), 1);
    assert_eq!(rows(&s)[0][0], "alpha");
    w.ok("filter ");
    assert_eq!(rows(&w.state()).len(), 2);
    w.screenshot(&shots.join("gtk-plan.png"));

    // Sync: the confirmation shows the plan; while pacman's lock is held
    // the operation waits, shows its progress and can be cancelled.
    let lock = machine.hold_pacman_lock().expect("db.lck");
    w.ok("click sync");
    let s = w.wait(Duration::from_secs(30), "the confirmation", |s| {
        s["dialog"]["rows"] == 2
    });
    assert_eq!(s["dialog"]["verb"], "sync");
    assert_eq!(s["dialog"]["confirm_enabled"], true);
    wait_for(Duration::from_secs(5), "the dialog is drawn", || {
        (w.send(&format!(
            "screenshot-dialog {}",
            shots.join("gtk-confirm.png").display()
        ))["ok"]
            == true)
            .then_some(())
    });
    w.ok("click dialog-confirm");
    let s = w.wait(Duration::from_secs(30), "the progress view", |s| {
        s["status"] == "syncing" && s["progress"]["visible"] == true
    });
    assert_eq!(s["buttons"]["cancel"], true);
    assert_eq!(s["buttons"]["sync"], false);
    assert!(s["dialog"].is_null(), "the dialog closed");
    w.screenshot(&shots.join("gtk-progress.png"));
    w.ok("click cancel");
    drop(lock);
    let s = w.wait(Duration::from_secs(45), "the cancelled operation", |s| {
        s["progress"]["outcome"] == "cancelled" && s["status"] == "behind"
    });
    assert!(
        s["progress"]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Sync cancelled"))
    );
    assert_eq!(
        machine
            .query()
            .expect("-Q")
            .get("alpha")
            .map(String::as_str),
        Some("1.0-1"),
        "nothing changed"
    );

    // Sync again, to the end.
    w.ok("click dismiss");
    w.ok("click sync");
    w.wait(Duration::from_secs(30), "the confirmation", |s| {
        s["dialog"]["rows"] == 2
    });
    w.ok("click dialog-confirm");
    let s = w.wait(Duration::from_secs(30), "the finished sync", |s| {
        s["progress"]["outcome"] == "succeeded"
            && s["status"] == "in_sync"
            && s["plan_placeholder"].is_string()
    });
    let log: Vec<String> = serde_json::from_value(s["progress"]["log"].clone()).unwrap_or_default();
    assert!(
        log.len() >= 2
            && log.iter().any(|l| l.contains("checking"))
            && log.last().is_some_and(|l| l.starts_with("100%")),
        "the progress log shows the steps: {log:?}"
    );
    assert_eq!(s["progress"]["fraction"], 1.0);
    assert_eq!(s["icon"], "pacsync-in-sync");
    assert_eq!(s["buttons"]["sync"], false);
    assert_eq!(s["buttons"]["revert"], true);
    assert!(s["error"].is_null(), "no error: {}", s["error"]);
    assert_eq!(
        machine
            .query()
            .expect("-Q")
            .get("alpha")
            .map(String::as_str),
        Some("2.0-1")
    );
    w.screenshot(&shots.join("gtk-in-sync.png"));

    // History and settings pages.
    w.ok("page history");
    let s = w.wait(Duration::from_secs(30), "the history", |s| {
        s["history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|e| e["kind"] == "sync" && e["outcome"] == "succeeded")
        })
    });
    assert!(
        s["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["outcome"] == "cancelled"))
    );
    w.screenshot(&shots.join("gtk-history.png"));
    w.ok("page settings");
    w.screenshot(&shots.join("gtk-settings.png"));
    w.ok("page plan");

    // The daemon restarts: the window says so, then follows it again.
    machine.kill_daemon().expect("kill");
    let s = w.wait(Duration::from_secs(30), "the daemon gone", |s| {
        s["status"] == "unavailable"
    });
    assert_eq!(s["buttons"]["sync"], false);
    assert_eq!(s["buttons"]["refresh"], false);
    machine.restart_daemon().expect("restart");
    w.wait(Duration::from_secs(45), "the daemon back", |s| {
        s["status"] == "in_sync"
    });
    drop(w);

    // The dark theme.
    let mut dark = Window::start(&machine, &x, &session, dir.path(), Some("Adwaita:dark"));
    dark.wait(Duration::from_secs(45), "the dark window", |s| {
        s["status"] == "in_sync" && s["plan_placeholder"].is_string()
    });
    dark.ok("click revert");
    dark.wait(Duration::from_secs(30), "the revert confirmation", |s| {
        s["dialog"]["verb"] == "revert"
    });
    dark.ok("click dialog-cancel");
    dark.wait(Duration::from_secs(30), "the dialog closed", |s| {
        s["dialog"].is_null()
    });
    dark.screenshot(&shots.join("gtk-dark.png"));
}
