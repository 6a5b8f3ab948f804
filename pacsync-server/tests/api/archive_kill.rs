//! kill -9 of the server process while a package file arrives — a
//! machine's slow upload, a fill from a slow mirror — leaves no partial
//! file under `objects/`; after a restart `archive verify` is clean and the
//! same file is stored whole.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pacsync_tests::server_process::ServerProcess;
use pacsync_tests::{PackageSpec, noise};

use crate::archive_fill::files_under;
use crate::harness::sha256;
use crate::mirror::Mirror;

const SERVER: &str = env!("CARGO_BIN_EXE_pacsync-server");

/// A package file of about `len` bytes.
fn big_package(name: &str, len: usize) -> (PackageSpec, Vec<u8>) {
    let spec =
        PackageSpec::new(name, "1.0-1").file(format!("usr/share/{name}/blob"), noise(len, 3));
    let dir = tempfile::tempdir().expect("dir");
    let path = spec.build(dir.path()).expect("build");
    (spec, std::fs::read(path).expect("read"))
}

/// `pacsync-server archive ARGS` on the data dir: exit code and stdout.
fn archive_cli(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = Command::new(SERVER)
        .envs(env.iter().copied())
        .env("LOG_LEVEL", "warn")
        .arg("archive")
        .args(args)
        .output()
        .expect("run pacsync-server archive");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until a temporary file under `tmp/` has bytes in it.
fn wait_for_partial(archive: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(p) = files_under(&archive.join("tmp"))
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn port_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Sends a PUT of `body` to the archive, chunked; with `stop_after`, only
/// that many bytes are sent and the stream is returned open.
fn put_chunked(addr: &str, token: &str, body: &[u8], stop_after: Option<usize>) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "PUT /api/archive/packages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .expect("head");
    let end = stop_after.unwrap_or(body.len());
    for chunk in body[..end].chunks(16 * 1024) {
        write!(s, "{:x}\r\n", chunk.len()).expect("size");
        s.write_all(chunk).expect("chunk");
        s.write_all(b"\r\n").expect("crlf");
    }
    if stop_after.is_none() {
        s.write_all(b"0\r\n\r\n").expect("end");
    }
    s.flush().expect("flush");
    s
}

fn status_line(s: TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    line
}

#[test]
fn kill_during_an_upload_leaves_nothing_visible() {
    let data = tempfile::tempdir().expect("data");
    let data_dir = data.path().display().to_string();
    let env = [("PACSYNC_DATA_DIR", data_dir.as_str())];
    let archive = data.path().join("archive");
    let mut server = ServerProcess::start_with_env(Path::new(SERVER), &env).expect("server");
    let api = server.admin_client().expect("admin");
    let (_, file) = big_package("big", 2 << 20);

    let open = put_chunked(
        &port_of(&server.url()),
        api.token(),
        &file,
        Some(file.len() / 2),
    );
    wait_for_partial(&archive);
    server.kill().expect("kill -9");
    drop(open);
    assert_eq!(files_under(&archive.join("objects")), Vec::<PathBuf>::new());

    server.restart().expect("restart");
    let (code, out) = archive_cli(&env, &["verify"]);
    assert_eq!((code, out.trim()), (0, "0 files checked, 0 damaged"));
    let answer = status_line(put_chunked(
        &port_of(&server.url()),
        api.token(),
        &file,
        None,
    ));
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let sha = sha256(&file);
    assert_eq!(
        std::fs::read(archive.join("objects").join(&sha[..2]).join(&sha)).expect("stored"),
        file
    );
    let (code, out) = archive_cli(&env, &["verify"]);
    assert_eq!((code, out.trim()), (0, "1 files checked, 0 damaged"));
}

#[test]
fn kill_during_a_fill_leaves_nothing_visible() {
    let repo = pacsync_tests::Repo::new("core").expect("repo");
    let (spec, _) = big_package("big", 2 << 20);
    let path = repo
        .add(std::slice::from_ref(&spec))
        .expect("repo-add")
        .remove(0);
    let file = std::fs::read(path).expect("file");
    let mirror = Mirror::start(&[("core", repo.dir())]);
    // About 6 s for the whole file: time to kill it half-way.
    mirror.throttle(16 * 1024, Duration::from_millis(50));

    let data = tempfile::tempdir().expect("data");
    let data_dir = data.path().display().to_string();
    let url = mirror.server_url();
    let env = [
        ("PACSYNC_DATA_DIR", data_dir.as_str()),
        ("ARCHIVE_MIRRORS", url.as_str()),
        ("ARCHIVE_MIRROR_REPOS", "core"),
    ];
    let archive = data.path().join("archive");
    let mut server = ServerProcess::start_with_env(Path::new(SERVER), &env).expect("server");
    let api = server.admin_client().expect("admin");
    let (_, token) = api.pool_with_token("lab").expect("pool");
    let machine = api.register_machine(&token, "m").expect("machine");
    machine.report(&[("big", "1.0-1", true)]).expect("report");
    machine.set_latest("").expect("set-latest");

    wait_for_partial(&archive);
    server.kill().expect("kill -9");
    assert_eq!(files_under(&archive.join("objects")), Vec::<PathBuf>::new());

    server.restart().expect("restart");
    let (code, out) = archive_cli(&env, &["verify"]);
    assert_eq!((code, out.trim()), (0, "0 files checked, 0 damaged"));
    let (code, out) = archive_cli(&env, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains(": unfinished"), "the killed fill shows: {out}");

    mirror.throttle(1 << 20, Duration::ZERO);
    let (code, out) = archive_cli(&env, &["fill", "lab"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("stored {}", spec.filename())),
        "{out}"
    );
    let sha = sha256(&file);
    let mut stored = Vec::new();
    std::fs::File::open(archive.join("objects").join(&sha[..2]).join(&sha))
        .and_then(|mut f| f.read_to_end(&mut stored))
        .expect("stored");
    assert_eq!(stored, file);
    let (code, out) = archive_cli(&env, &["verify"]);
    assert_eq!((code, out.trim()), (0, "1 files checked, 0 damaged"));
}
