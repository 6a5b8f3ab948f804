//! The package archive end to end: a real pacsync-server keeping package
//! files, a real pacsyncd syncing a sandboxed pacman root from it, and real
//! pacman reading a pool's snapshot repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::server_process::{ApiClient, ServerProcess, sibling_binary};
use pacsync_tests::system_bus::SystemBus;
use pacsync_tests::{PackageSpec, Repo, Sandbox, ScratchDir, require_pacman_sandbox};
use serde_json::Value;

const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");

struct World {
    bus: SystemBus,
    server: ServerProcess,
    /// The server's database and archive, so its CLI can reach them.
    server_data: ScratchDir,
    admin: ApiClient,
    pool: String,
    token: String,
    sandbox: Sandbox,
    home: DaemonHome,
    _daemon: DaemonProcess,
    files: ScratchDir,
    _repo: Repo,
}

fn spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec::new(name, version).file(format!("usr/share/{name}/version"), version.as_bytes())
}

/// A machine with alpha 1.0 (from a local file, which is in its pacman
/// cache as after an earlier install) and beta 2.0 from the repository;
/// the repository offers alpha 2.0 and beta 2.0. Registered as "bravo"
/// with a server whose pool "office" has no target.
fn world() -> Option<World> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let repo = Repo::new("test").expect("repo");
    repo.add(&[spec("alpha", "2.0-1"), spec("beta", "2.0-1")])
        .expect("repo-add");
    let files = ScratchDir::new("archive-packages").expect("dir");
    let alpha1 = spec("alpha", "1.0-1")
        .build(files.path())
        .expect("alpha 1.0");
    let sandbox = Sandbox::new(&[&repo]).expect("sandbox");
    sandbox.sync_dbs().expect("-Syy");
    sandbox.install_files(&[&alpha1]).expect("alpha 1.0");
    sandbox.install(&["beta"]).expect("beta");
    std::fs::copy(&alpha1, sandbox.cache_dir().join(file_name(&alpha1))).expect("into the cache");
    std::fs::remove_file(&alpha1).expect("only the cache has alpha 1.0");

    let bus = SystemBus::start().expect("bus");
    let server_data = ScratchDir::new("archive-server").expect("dir");
    let env = server_env(server_data.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with_env(&sibling_binary(DAEMON, "pacsync-server"), &env)
        .expect("server");
    let admin = server.admin_client().expect("admin");
    let (pool, token) = admin.pool_with_token("office").expect("pool");
    let home = DaemonHome::new(&sandbox).expect("home");
    let daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home).expect("daemon");
    let w = World {
        bus,
        server,
        server_data,
        admin,
        pool,
        token,
        sandbox,
        home,
        _daemon: daemon,
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

fn server_env(data: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            data.join("pacsync.db").display().to_string(),
        ),
        ("ARCHIVE_DIR", data.join("archive").display().to_string()),
    ]
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl World {
    fn pacsync(&self, args: &[&str]) -> Output {
        Command::new(sibling_binary(DAEMON, "pacsync"))
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

    /// `pacsync-server archive ARGS…` on the running server's data.
    fn archive_cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(sibling_binary(DAEMON, "pacsync-server"));
        cmd.env("PACSYNC_DATA_DIR", self.server_data.path())
            .env("LOG_LEVEL", "warn")
            .arg("archive")
            .args(args);
        for (k, v) in server_env(self.server_data.path()) {
            cmd.env(k, v);
        }
        cmd.output().expect("run pacsync-server archive")
    }

    /// Make `packages` the pool's target through another (API) machine.
    fn set_target(&self, name: &str, packages: &[(&str, &str, bool)]) {
        let m = self
            .admin
            .register_machine(&self.token, name)
            .expect("reference machine");
        m.report(packages).expect("report");
        m.set_latest("from the reference machine")
            .expect("set-latest");
        let out = self.bus.call_daemon(None, "Refresh", &[]).expect("refresh");
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn query(&self) -> BTreeMap<String, String> {
        self.sandbox.query().expect("pacman -Q")
    }

    fn set_latest(&self) -> Value {
        let (code, done) = self.json(&["set-latest", "-m", "baseline", "--yes", "--json"]);
        assert_eq!(code, Some(0), "{done}\n{}", self.home.log());
        done
    }

    /// The archive's stored objects on disk.
    fn objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let top = self.server_data.path().join("archive/objects");
        for prefix in std::fs::read_dir(top).expect("objects").flatten() {
            for f in std::fs::read_dir(prefix.path()).expect("prefix").flatten() {
                out.push(f.path());
            }
        }
        out
    }

    fn cached(&self) -> Vec<String> {
        std::fs::read_dir(self.sandbox.cache_dir())
            .expect("cache")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn empty_cache(&self) {
        for f in std::fs::read_dir(self.sandbox.cache_dir())
            .expect("cache")
            .flatten()
        {
            std::fs::remove_file(f.path()).expect("remove from the cache");
        }
    }
}

fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn sync_and_revert_come_from_the_archive_when_no_repository_or_cache_has_the_version() {
    let Some(w) = world() else { return };
    let before = w.query();
    assert_eq!(before, versions(&[("alpha", "1.0-1"), ("beta", "2.0-1")]));

    // set-latest leaves alpha 1.0, which only this cache has, in the archive.
    let done = w.set_latest();
    let message = done["message"].as_str().unwrap_or_default();
    assert!(message.contains("uploaded to the archive"), "{message}");
    let status = w.admin.call("GET", "/api/archive", None).expect("status");
    assert!(status["files"].as_u64().unwrap_or(0) >= 1, "{status}");

    // alpha 3.0 exists only in the archive: imported by the admin from a
    // file that is then gone.
    let alpha3 = spec("alpha", "3.0-1")
        .build(w.files.path())
        .expect("alpha 3.0");
    let out = w.archive_cli(&["import", &alpha3.display().to_string()]);
    assert!(out.status.success(), "import: {}", stderr(&out));
    std::fs::remove_file(&alpha3).expect("gone");
    w.empty_cache();

    w.set_target(
        "reference",
        &[("alpha", "3.0-1", true), ("beta", "2.0-1", true)],
    );
    let (code, synced) = w.json(&["sync", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{synced}\n{}", w.home.log());
    assert_eq!(
        w.query(),
        versions(&[("alpha", "3.0-1"), ("beta", "2.0-1")]),
        "pacman -Q equals the target"
    );

    // The revert needs alpha 1.0 again: neither repository nor cache has it.
    w.empty_cache();
    let (code, reverted) = w.json(&["revert", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{reverted}\n{}", w.home.log());
    assert_eq!(
        w.query(),
        before,
        "the revert restored alpha 1.0 from the archive"
    );
    assert!(
        w.cached().iter().any(|f| f.starts_with("alpha-1.0-1-")),
        "the fetched file went to the pacman cache: {:?}",
        w.cached()
    );
    assert!(
        !w.cached().iter().any(|f| f.ends_with(".part")),
        "no partial download left: {:?}",
        w.cached()
    );
}

#[test]
fn a_foreign_package_set_as_latest_installs_elsewhere_from_the_pool_repository() {
    let Some(w) = world() else { return };
    // zeta is a local build (no repository has it), installed with -U and
    // kept in the cache.
    let zeta = spec("zeta", "0.9-2").build(w.files.path()).expect("zeta");
    w.sandbox.install_files(&[&zeta]).expect("zeta");
    std::fs::copy(&zeta, w.sandbox.cache_dir().join(file_name(&zeta))).expect("cache");
    std::fs::remove_file(&zeta).expect("only the cache has zeta");
    w.set_latest();

    // Another machine with only the pool's repository as a Server line.
    let url = format!("{}/repo/{}/current/$repo/os/$arch", w.server.url(), w.pool);
    let other = Sandbox::with_servers(&[("pacsync", url)]).expect("other machine");
    other
        .sync_dbs()
        .expect("pacman -Sy reads the snapshot repository");
    other
        .install(&["zeta", "alpha"])
        .expect("pacman -S from the pool repository");
    assert_eq!(
        other.query().expect("-Q"),
        versions(&[("alpha", "1.0-1"), ("zeta", "0.9-2")])
    );
}

#[test]
fn a_damaged_archive_file_is_reported_refused_and_stops_the_sync_before_any_change() {
    let Some(w) = world() else { return };
    w.set_latest();
    let objects = w.objects();
    assert!(!objects.is_empty(), "set-latest uploaded files");
    w.empty_cache();
    // The machine moves on; the target keeps alpha 1.0, now only archived.
    w.sandbox.install(&["alpha"]).expect("alpha 2.0");
    let before = w.query();
    assert_eq!(before["alpha"], "2.0-1");

    let out = w.archive_cli(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for object in &objects {
        let mut bytes = std::fs::read(object).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(object, bytes).expect("corrupt");
    }

    let out = w.archive_cli(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify fails: {stdout}");
    assert!(
        stdout.contains("DAMAGED alpha-1.0-1-any.pkg.tar.zst"),
        "{stdout}"
    );

    let refused = w
        .admin
        .call(
            "GET",
            &format!(
                "/repo/{}/current/pacsync/os/x86_64/alpha-1.0-1-any.pkg.tar.zst",
                w.pool
            ),
            None,
        )
        .expect_err("a damaged file is never served");
    assert!(
        format!("{refused:#}").contains("archive_damaged"),
        "{refused:#}"
    );

    let (code, done) = w.json(&["sync", "--yes", "--json"]);
    assert_eq!(code, Some(1), "{done}");
    let message = done["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("alpha 1.0-1")
            && message.contains("damaged")
            && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(w.query(), before, "nothing changed");
    assert!(
        !w.cached().iter().any(|f| f.starts_with("alpha-1.0-1")),
        "the damaged file never reached the cache: {:?}",
        w.cached()
    );
}
