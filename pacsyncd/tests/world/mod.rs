//! The world pacsyncd's end-to-end tests run in: a sandboxed pacman root
//! with a file:// repository, a private system bus with polkitd, a real
//! pacsync-server, the daemon, and the `pacsync` CLI as the user's hands.

// Each test binary uses its own part of this world.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::server_process::{ApiClient, ServerProcess, sibling_binary};
use pacsync_tests::system_bus::SystemBus;
use pacsync_tests::waybar_stream::WaybarStream;
use pacsync_tests::{PackageSpec, Repo, Sandbox, ScratchDir, require_pacman_sandbox};
use serde_json::Value;

pub const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");

pub struct World {
    pub bus: SystemBus,
    pub server: ServerProcess,
    pub admin: ApiClient,
    pub pool: String,
    pub token: String,
    pub sandbox: Sandbox,
    pub home: DaemonHome,
    pub daemon: Option<DaemonProcess>,
    /// A folder for package files a test builds.
    pub files: ScratchDir,
    _repo: Repo,
}

/// What the repository offers and the machine holds before the daemon
/// starts, as (name, version) pairs.
pub struct Layout<'a> {
    pub repository: &'a [(&'a str, &'a str)],
    /// Installed from a file (`pacman -U`) kept in the pacman cache.
    pub local: &'a [(&'a str, &'a str)],
    /// Installed from the repository.
    pub installed: &'a [&'a str],
    /// Only in the pacman cache, as after an earlier install.
    pub cached: &'a [(&'a str, &'a str)],
}

pub fn spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec::new(name, version).file(format!("usr/share/{name}/version"), version.as_bytes())
}

/// A machine with alpha 1.0, beta 2.0 and delta 1.0 installed; the
/// repository offers alpha 2.0, beta 2.0, gamma 1.0 and delta 1.0; the
/// pacman cache also holds alpha 1.0 and beta 1.0 (as after earlier
/// installs). Registered with a server whose pool "office" has no target.
pub fn world() -> Option<World> {
    world_with(&Layout {
        repository: &[
            ("alpha", "2.0-1"),
            ("beta", "2.0-1"),
            ("gamma", "1.0-1"),
            ("delta", "1.0-1"),
        ],
        local: &[("alpha", "1.0-1")],
        installed: &["beta", "delta"],
        cached: &[("beta", "1.0-1")],
    })
}

/// A machine laid out as `layout` says, registered as "bravo" with a
/// server whose pool "office" has no target; `None` where the machine
/// cannot run pacman sandboxes or a private system bus.
pub fn world_with(layout: &Layout) -> Option<World> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let specs = |pairs: &[(&str, &str)]| -> Vec<PackageSpec> {
        pairs
            .iter()
            .map(|(name, version)| spec(name, version))
            .collect()
    };
    let repo = Repo::new("test").expect("repo");
    repo.add(&specs(layout.repository)).expect("repo-add");
    let files = ScratchDir::new("old-packages").expect("dir");
    let build = |pairs: &[(&str, &str)]| -> Vec<PathBuf> {
        specs(pairs)
            .iter()
            .map(|s| s.build(files.path()).expect("package file"))
            .collect()
    };
    let local = build(layout.local);
    let cached = build(layout.cached);
    let sandbox = Sandbox::new(&[&repo]).expect("sandbox");
    sandbox.sync_dbs().expect("-Syy");
    if !local.is_empty() {
        sandbox.install_files(&local).expect("pacman -U");
    }
    if !layout.installed.is_empty() {
        sandbox.install(layout.installed).expect("pacman -S");
    }
    // Only the cache keeps the files: the daemon knows no other place.
    for f in local.iter().chain(&cached) {
        std::fs::copy(f, sandbox.cache_dir().join(file_name(f))).expect("into the cache");
        std::fs::remove_file(f).expect("only the cache has it");
    }

    let bus = SystemBus::start().expect("bus");
    let server = ServerProcess::start(&sibling_binary(DAEMON, "pacsync-server")).expect("server");
    let admin = server.admin_client().expect("admin");
    let (pool, token) = admin.pool_with_token("office").expect("pool");
    let home = DaemonHome::new(&sandbox).expect("home");
    let daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home).expect("daemon");
    let w = World {
        bus,
        server,
        admin,
        pool,
        token,
        sandbox,
        home,
        daemon: Some(daemon),
        files,
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

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn cli() -> PathBuf {
    sibling_binary(DAEMON, "pacsync")
}

impl World {
    pub fn pacsync(&self, args: &[&str]) -> Output {
        Command::new(cli())
            .args(["--bus", self.bus.address()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pacsync")
    }

    pub fn json(&self, args: &[&str]) -> (Option<i32>, Value) {
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

    pub fn status(&self) -> String {
        self.json(&["status", "--json"]).1["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Make `packages` the pool's target through another (API) machine,
    /// and tell the daemon with a Refresh.
    pub fn set_target(&self, name: &str, packages: &[(&str, &str, bool)]) {
        self.publish_target(name, packages);
        let out = self.bus.call_daemon(None, "Refresh", &[]).expect("refresh");
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// Make `packages` the pool's target through another (API) machine;
    /// the daemon hears of it only through the server's push channel.
    pub fn publish_target(&self, name: &str, packages: &[(&str, &str, bool)]) {
        let m = self
            .admin
            .register_machine(&self.token, name)
            .expect("reference machine");
        m.report(packages).expect("report");
        m.set_latest("the office baseline").expect("set-latest");
    }

    /// The server's id of the daemon's machine.
    pub fn endpoint_id(&self) -> String {
        let endpoints = self
            .admin
            .call("GET", "/api/endpoints", None)
            .expect("list");
        endpoints["items"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == "bravo"))
            .and_then(|e| e["id"].as_str())
            .expect("bravo on the server")
            .to_owned()
    }

    /// How many times the daemon has opened the push channel.
    pub fn push_sessions(&self) -> usize {
        self.home.log().matches("push channel open").count()
    }

    pub fn query(&self) -> BTreeMap<String, String> {
        self.sandbox.query().expect("pacman -Q")
    }

    pub fn waybar(&self) -> WaybarStream {
        WaybarStream::start(&cli(), self.bus.address()).expect("pacsync waybar")
    }
}

pub fn target_packages() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("alpha", "2.0-1", true),
        ("beta", "1.0-1", true),
        ("gamma", "1.0-1", false),
    ]
}

pub fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}
