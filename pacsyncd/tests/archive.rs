//! The package archive end to end: a real pacsync-server keeping package
//! files, a real pacsyncd syncing a sandboxed pacman root from it, and real
//! pacman reading a pool's snapshot repository.

mod world;

use std::path::PathBuf;
use std::process::{Command, Output};

use pacsync_tests::Sandbox;
use pacsync_tests::server_process::sibling_binary;
use serde_json::Value;
use world::{DAEMON, Layout, World, file_name, spec, stderr, versions, world_with};

/// A machine with alpha 1.0 (from a local file, which is in its pacman
/// cache as after an earlier install) and beta 2.0 from the repository;
/// the repository offers alpha 2.0 and beta 2.0. Registered as "bravo"
/// with a server whose pool "office" has no target.
fn world() -> Option<World> {
    world_with(&Layout {
        repository: &[("alpha", "2.0-1"), ("beta", "2.0-1")],
        local: &[("alpha", "1.0-1")],
        installed: &["beta"],
        cached: &[],
    })
}

/// `pacsync-server archive ARGS…` on the running server's data.
fn archive_cli(w: &World, args: &[&str]) -> Output {
    Command::new(sibling_binary(DAEMON, "pacsync-server"))
        .env("PACSYNC_DATA_DIR", w.server.data_dir())
        .env("LOG_LEVEL", "warn")
        .arg("archive")
        .args(args)
        .output()
        .expect("run pacsync-server archive")
}

fn set_latest(w: &World) -> Value {
    let (code, done) = w.json(&["set-latest", "-m", "baseline", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{done}\n{}", w.home.log());
    done
}

/// The archive's stored objects on disk.
fn objects(w: &World) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let top = w.server.data_dir().join("archive/objects");
    for prefix in std::fs::read_dir(top).expect("objects").flatten() {
        for f in std::fs::read_dir(prefix.path()).expect("prefix").flatten() {
            out.push(f.path());
        }
    }
    out
}

fn cached(w: &World) -> Vec<String> {
    std::fs::read_dir(w.sandbox.cache_dir())
        .expect("cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn empty_cache(w: &World) {
    for f in std::fs::read_dir(w.sandbox.cache_dir())
        .expect("cache")
        .flatten()
    {
        std::fs::remove_file(f.path()).expect("remove from the cache");
    }
}

#[test]
fn sync_and_revert_come_from_the_archive_when_no_repository_or_cache_has_the_version() {
    let Some(w) = world() else { return };
    let before = w.query();
    assert_eq!(before, versions(&[("alpha", "1.0-1"), ("beta", "2.0-1")]));

    // set-latest leaves alpha 1.0, which only this cache has, in the archive.
    let done = set_latest(&w);
    let message = done["message"].as_str().unwrap_or_default();
    assert!(message.contains("uploaded to the archive"), "{message}");
    let status = w.admin.call("GET", "/api/archive", None).expect("status");
    assert!(status["files"].as_u64().unwrap_or(0) >= 1, "{status}");

    // alpha 3.0 exists only in the archive: imported by the admin from a
    // file that is then gone.
    let alpha3 = spec("alpha", "3.0-1")
        .build(w.files.path())
        .expect("alpha 3.0");
    let out = archive_cli(&w, &["import", &alpha3.display().to_string()]);
    assert!(out.status.success(), "import: {}", stderr(&out));
    std::fs::remove_file(&alpha3).expect("gone");
    empty_cache(&w);

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
    empty_cache(&w);
    let (code, reverted) = w.json(&["revert", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{reverted}\n{}", w.home.log());
    assert_eq!(
        w.query(),
        before,
        "the revert restored alpha 1.0 from the archive"
    );
    assert!(
        cached(&w).iter().any(|f| f.starts_with("alpha-1.0-1-")),
        "the fetched file went to the pacman cache: {:?}",
        cached(&w)
    );
    assert!(
        !cached(&w).iter().any(|f| f.ends_with(".part")),
        "no partial download left: {:?}",
        cached(&w)
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
    set_latest(&w);

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
fn pacman_resumes_an_interrupted_download_from_the_pool_repository() {
    let Some(w) = world() else { return };
    // alpha 1.0, which only this machine's cache has, goes to the archive.
    set_latest(&w);
    let alpha = w.sandbox.cache_dir().join("alpha-1.0-1-any.pkg.tar.zst");
    let whole = std::fs::read(&alpha).expect("alpha 1.0 in the cache");

    // Another machine whose download of alpha broke half way: pacman left
    // the first half as a .part file in its cache.
    let url = format!("{}/repo/{}/current/$repo/os/$arch", w.server.url(), w.pool);
    let other = Sandbox::with_servers(&[("pacsync", url)]).expect("other machine");
    other.sync_dbs().expect("pacman -Sy");
    let part = other.cache_dir().join("alpha-1.0-1-any.pkg.tar.zst.part");
    std::fs::write(&part, &whole[..whole.len() / 2]).expect("the .part file");
    other
        .install(&["alpha"])
        .expect("pacman -S resumes the download");
    assert_eq!(other.query().expect("-Q"), versions(&[("alpha", "1.0-1")]));
    assert!(!part.exists(), "the .part became the package file");
    assert_eq!(
        std::fs::read(other.cache_dir().join("alpha-1.0-1-any.pkg.tar.zst")).expect("cached"),
        whole,
        "resumed where it stopped, to the same bytes"
    );
}

#[test]
fn a_damaged_archive_file_is_reported_refused_and_stops_the_sync_before_any_change() {
    let Some(w) = world() else { return };
    set_latest(&w);
    let objects = objects(&w);
    assert!(!objects.is_empty(), "set-latest uploaded files");
    empty_cache(&w);
    // The machine moves on; the target keeps alpha 1.0, now only archived.
    w.sandbox.install(&["alpha"]).expect("alpha 2.0");
    let before = w.query();
    assert_eq!(before["alpha"], "2.0-1");

    let out = archive_cli(&w, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for object in &objects {
        let mut bytes = std::fs::read(object).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(object, bytes).expect("corrupt");
    }

    let out = archive_cli(&w, &["verify"]);
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
        !cached(&w).iter().any(|f| f.starts_with("alpha-1.0-1")),
        "the damaged file never reached the cache: {:?}",
        cached(&w)
    );
}
