//! Garbage collection through the real flow: several targets set from a
//! machine's reports, a rollback, state history cleaned per retention,
//! then `gc` — every file a target in the pool's history references stays
//! (each target's snapshot repository still serves all its files), a file
//! only an old, cleaned state referenced goes, and so does one nothing
//! ever referenced.

use pacsync_server::store::{now_ms, retention};
use pacsync_tests::PackageSpec;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::archive_fill::files_under;
use crate::harness::{Backend, TestServer, sha256, state};

crate::on_both_backends!(gc_keeps_every_file_of_the_target_history);

async fn gc_keeps_every_file_of_the_target_history(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let archive_dir = archive.display().to_string();
    let Some(s) = TestServer::start_with(backend, &[("ARCHIVE_DIR", archive_dir.as_str())]).await
    else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "lab").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;

    // Real package files, uploaded by the machine.
    let build = tempfile::tempdir().expect("build");
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (name, version) in [
        ("foo", "1-1"),
        ("foo", "2-1"),
        ("foo", "3-1"),
        ("bar", "1-1"),
        ("scratch", "1-1"),
        ("stray", "1-1"),
    ] {
        let spec = PackageSpec::new(name, version).file(format!("usr/share/{name}/v"), version);
        let bytes = std::fs::read(spec.build(build.path()).expect("build")).expect("read");
        let resp = s
            .client
            .put(format!("{}/api/archive/packages", s.base))
            .bearer_auth(&a.token)
            .body(bytes.clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), StatusCode::CREATED);
        files.push((name.to_owned(), version.to_owned(), bytes));
    }

    // scratch 1 is only in a state the machine moved on from; then three
    // targets and a rollback to the first.
    assert_eq!(
        s.report(&a, &state(&[("foo", "1-1"), ("scratch", "1-1")]))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.report(&a, &state(&[("foo", "1-1"), ("bar", "1-1")]))
            .await,
        StatusCode::NO_CONTENT
    );
    let t1 = s.set_latest(&a).await;
    assert_eq!(
        s.report(&a, &state(&[("foo", "2-1"), ("bar", "1-1")]))
            .await,
        StatusCode::NO_CONTENT
    );
    let t2 = s.set_latest(&a).await;
    assert_eq!(
        s.report(&a, &state(&[("foo", "3-1")])).await,
        StatusCode::NO_CONTENT
    );
    let t3 = s.set_latest(&a).await;
    let (st, v) = s
        .post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": t1 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t4 = v["id"].as_str().expect("rollback target").to_owned();

    let object = |bytes: &[u8]| {
        let sha = sha256(bytes);
        archive.join("objects").join(&sha[..2]).join(sha)
    };
    let present = |name: &str| {
        files
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, b)| object(b).exists())
            .expect("known file")
    };

    // The retained state history still references scratch: only stray goes.
    let (st, gc) = s.post("/api/archive/gc", &admin, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{gc}");
    assert_eq!(gc["removed"], json!(["stray-1-1-any.pkg.tar.zst"]), "{gc}");
    assert!(present("scratch") && !present("stray"));

    // Retention drops the old states; scratch is referenced by nothing now.
    let cleaned = s
        .store
        .write(|conn| retention::cleanup(conn, now_ms() + 3_600_000))
        .await
        .expect("cleanup");
    let (_, gc) = s.post("/api/archive/gc", &admin, json!({})).await;
    assert_eq!(
        gc["removed"],
        json!(["scratch-1-1-any.pkg.tar.zst"]),
        "{gc} after {cleaned:?}"
    );
    assert_eq!(gc["kept"], 4, "{gc}");
    assert_eq!(files_under(&archive.join("objects")).len(), 4);

    // Every target in the history still serves every one of its files.
    for (target, names) in [
        (&t1, vec!["bar", "foo"]),
        (&t2, vec!["bar", "foo"]),
        (&t3, vec!["foo"]),
        (&t4, vec!["bar", "foo"]),
    ] {
        let base = format!("/repo/{pool}/{target}/lab/os/x86_64");
        let (st, db) = s.get_bytes(&format!("{base}/lab.db")).await;
        assert_eq!(st, StatusCode::OK);
        let entries = pacsync_core::syncdb::parse_sync_db(&db).expect("database");
        let listed: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(listed, names, "target {target}");
        for e in &entries {
            let (st, body) = s.get_bytes(&format!("{base}/{}", e.filename)).await;
            assert_eq!(st, StatusCode::OK, "{} of {target}", e.filename);
            assert_eq!(Some(sha256(&body)), e.sha256, "{}", e.filename);
        }
    }
    let (_, v): (_, Value) = s.post("/api/archive/verify", &admin, json!({})).await;
    assert_eq!(
        (v["checked"].as_u64(), &v["damaged"]),
        (Some(4), &json!([])),
        "{v}"
    );
    s.stop().await;
}
