//! A throwaway PostgreSQL server per test process, started from the
//! binaries in /usr/lib/postgresql/*/bin (or $PACSYNC_PG_BIN). PostgreSQL
//! refuses to run as root, so as root it runs as a system user the
//! harness creates (`pacsync-pgtest`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PG_USER: &str = "pacsync-pgtest";

pub struct Postgres {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PACSYNC_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn id_of(user: Option<&str>) -> Option<(u32, u32)> {
    let out = |flag: &str| -> Option<u32> {
        let o = Command::new("id").arg(flag).args(user).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((out("-u")?, out("-g")?))
}

/// The uid/gid to run PostgreSQL as: ourselves unless we are root.
fn run_as() -> Option<(u32, u32)> {
    let me = id_of(None)?;
    if me.0 != 0 {
        return Some(me);
    }
    if id_of(Some(PG_USER)).is_none() {
        // Several test processes may race here; whoever loses finds the user.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ])
            .status();
    }
    id_of(Some(PG_USER))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts a server, or returns `None` (after saying SKIPPED) when the
/// binaries are missing; with `CI` set that is a failure instead.
pub fn start() -> Option<Postgres> {
    start_with(None)
}

/// A server that takes TCP connections only over TLS, with this PEM
/// certificate and key.
pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<Postgres> {
    start_with(Some((cert_pem, key_pem)))
}

fn start_with(tls: Option<(&str, &str)>) -> Option<Postgres> {
    let Some(bin) = bin_dir() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL binaries not found (install postgresql or set PACSYNC_PG_BIN)"
        );
        eprintln!("SKIPPED: PostgreSQL binaries not found");
        return None;
    };
    let (uid, gid) = run_as().expect("a user to run PostgreSQL as");
    let dir = tempfile::Builder::new()
        .prefix("pacsync-pg")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster dir");
    let data = dir.path().join("data");
    let run = |cmd: &Path, args: &[&str]| {
        let out = Command::new(cmd)
            .args(args)
            .current_dir(dir.path())
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run a PostgreSQL binary");
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            cmd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let data_s = data.to_str().expect("utf-8 path");
    run(
        &bin.join("initdb"),
        &[
            "-D",
            data_s,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    let mut tls_args: Vec<String> = Vec::new();
    if let Some((cert, key)) = tls {
        use std::os::unix::fs::PermissionsExt as _;
        for (name, pem) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, pem).expect("write TLS file");
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown TLS file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod TLS file");
        }
        // TCP connections only with TLS.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        tls_args = [
            "ssl=on",
            "ssl_cert_file=server.crt",
            "ssl_key_file=server.key",
        ]
        .iter()
        .flat_map(|a| ["-c".to_owned(), (*a).to_owned()])
        .collect();
    }
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
    let child = Command::new(bin.join("postgres"))
        .args([
            "-D",
            data_s,
            "-k",
            dir.path().to_str().expect("utf-8"),
            "-p",
            &port.to_string(),
        ])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ])
        .args(&tls_args)
        .current_dir(dir.path())
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postgres");
    let pg = Postgres {
        child,
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _dir: dir,
    };
    // Ready when pg_isready says so; bounded, so a broken start fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new(bin.join("pg_isready"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-t",
                "1",
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(pg)
}
