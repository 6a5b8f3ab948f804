//! What ships around the binary: the systemd unit, the Dockerfile, and the
//! `healthcheck` subcommand the image's HEALTHCHECK runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Backend, JWT_SECRET, TestServer};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn healthcheck(envs: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacsync-server"));
    cmd.arg("healthcheck")
        .env_clear()
        .env("PACSYNC_DATA_DIR", dir.path())
        .env("JWT_SECRET_KEY", JWT_SECRET);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run pacsync-server healthcheck")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_follows_readiness() {
    let s = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let port = s.base.rsplit(':').next().expect("port").to_owned();
    let ok = tokio::task::spawn_blocking(move || {
        healthcheck(&[("HTTP_HOST", "0.0.0.0"), ("HTTP_PORT", &port)])
    })
    .await
    .expect("ran");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    s.stop().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let down = healthcheck(&[("HTTP_PORT", &free)]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_to_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["server.example".into()]).expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let (cert, key) = (
        cert.to_str().expect("utf-8").to_owned(),
        key.to_str().expect("utf-8").to_owned(),
    );
    let settings = crate::harness::settings_for(
        dir.path(),
        &[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pacsync_server::launch(settings, listener, async {
        let _ = rx.await;
    }));
    let (c, k, p) = (cert.clone(), key.clone(), port.clone());
    let out = tokio::task::spawn_blocking(move || {
        healthcheck(&[
            ("HTTP_PORT", &p),
            ("TLS_CERT_FILE", &c),
            ("TLS_KEY_FILE", &k),
        ])
    })
    .await
    .expect("ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another certificate is not the server's: refused.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).expect("write");
    let o = other_path.to_str().expect("utf-8").to_owned();
    let out = tokio::task::spawn_blocking(move || {
        healthcheck(&[
            ("HTTP_PORT", &port),
            ("TLS_CERT_FILE", &o),
            ("TLS_KEY_FILE", &key),
        ])
    })
    .await
    .expect("ran");
    assert_eq!(out.status.code(), Some(1));
    tx.send(()).expect("running");
    server.await.expect("task").expect("clean exit");
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("SKIPPED: systemd-analyze not installed");
        return;
    }
    let unit = std::fs::read_to_string(repo_file("systemd/pacsync-server.service")).expect("unit");
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pacsync-server.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/bin/pacsync-server",
            env!("CARGO_BIN_EXE_pacsync-server"),
        ),
    )
    .expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("pacsync-server.service"), "{stderr}");
    let out = Command::new(analyze)
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .expect("security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("exposure level for pacsync-server.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in {text}"));
    assert!(score <= 2.0, "exposure {score} — hardening lost?\n{text}");
}

#[test]
fn dockerfile_is_multi_stage_unprivileged_with_a_healthcheck() {
    let text = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let starting = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count();
    assert!(starting("FROM ") >= 2, "multi-stage");
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(text.contains("VOLUME [\"/var/lib/pacsync-server\"]"));
    assert!(text.contains("pacsync-server\", \"healthcheck\"]"));
    assert!(text.contains("HEALTHCHECK"));
    assert!(
        !lines.iter().any(|l| l.contains("curl")),
        "the slim image has no curl"
    );
}
