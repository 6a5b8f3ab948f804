//! The package archive over HTTP: uploads stored once and checked, the
//! snapshot repository's database and files, garbage collection that keeps
//! what history references, the size limit, and damage found and refused.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, Machine, TestServer, package, sha256, state};

crate::on_both_backends!(
    uploads_are_stored_once_served_and_collected,
    a_full_archive_refuses_and_keeps_nothing,
    damage_is_reported_and_never_served
);

async fn upload(s: &TestServer, token: &str, query: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .client
        .put(format!("{}/api/archive/packages{query}", s.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.expect("JSON answer"))
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// A server whose archive lives in a directory the test sees, a pool with
/// machine "a" whose state `packages` is the pool's target.
async fn start(
    backend: Backend,
    archive: &Path,
    limit: Option<&str>,
    packages: &[(&str, &str)],
) -> Option<(TestServer, String, String, Machine)> {
    let dir = archive.display().to_string();
    let mut extra = vec![("ARCHIVE_DIR", dir.as_str())];
    if let Some(l) = limit {
        extra.push(("ARCHIVE_MAX_SIZE", l));
    }
    let s = TestServer::start_with(backend, &extra).await?;
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "lab").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    assert_eq!(s.report(&a, &state(packages)).await, StatusCode::NO_CONTENT);
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &a.token,
            json!({}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    Some((s, admin, pool, a))
}

/// GET `path` with these request headers: status, headers, body.
async fn get_with(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = s.client.get(format!("{}{path}", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET");
    let (status, h) = (resp.status(), resp.headers().clone());
    (status, h, resp.bytes().await.expect("body").to_vec())
}

/// A stored file served in part: an interrupted download resumed the way
/// pacman does it (`Range: bytes=N-`), the other forms of one range, and
/// what is not served in part.
async fn ranges_of_a_file(s: &TestServer, path: &str, content: &[u8]) {
    let n = content.len();
    let etag = format!("\"{}\"", sha256(content));
    let (st, h, body) = get_with(s, path, &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, content);
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"], etag.as_str());
    for (range, from, to) in [
        ("bytes=10-".to_owned(), 10, n - 1),
        ("bytes=0-9".to_owned(), 0, 9),
        ("bytes=-5".to_owned(), n - 5, n - 1),
        (format!("bytes={}-{}", n - 1, n + 100), n - 1, n - 1),
    ] {
        let (st, h, body) = get_with(s, path, &[("range", &range)]).await;
        assert_eq!(st, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(body, &content[from..=to], "{range}");
        assert_eq!(
            h["content-range"],
            format!("bytes {from}-{to}/{n}").as_str()
        );
        assert_eq!(h["content-length"], (to - from + 1).to_string().as_str());
    }
    let (st, h, body) = get_with(s, path, &[("range", &format!("bytes={n}-"))]).await;
    assert_eq!(st, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], format!("bytes */{n}").as_str());
    let v: Value = serde_json::from_slice(&body).expect("an error body");
    assert_eq!(v["error"]["code"], "range_not_satisfiable", "{v}");
    // Several ranges, or an If-Range that is not the file's ETag: all of it.
    for headers in [
        vec![("range", "bytes=0-1,4-5")],
        vec![("range", "bytes=10-"), ("if-range", "\"another\"")],
    ] {
        let (st, _, body) = get_with(s, path, &headers).await;
        assert_eq!(
            (st, body.as_slice()),
            (StatusCode::OK, content),
            "{headers:?}"
        );
    }
    // HEAD: the whole file's headers, whatever the range.
    let head = s
        .client
        .head(format!("{}{path}", s.base))
        .header("range", "bytes=10-")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], n.to_string().as_str());
    let (st, _, body) = get_with(s, path, &[("range", "bytes=10-"), ("if-range", &etag)]).await;
    assert_eq!(
        (st, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &content[10..])
    );
}

async fn uploads_are_stored_once_served_and_collected(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let archive: PathBuf = dir.path().join("archive");
    let Some((s, admin, pool, a)) = start(backend, &archive, None, &[("foo", "1.0-1")]).await
    else {
        return;
    };
    let foo_file = package("foo", "1.0-1", "foo one");
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/archive", a.id), &a.token)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["packages"][0]["sha256"],
        Value::Null,
        "nothing archived yet"
    );

    let query = format!("?name=foo&version=1.0-1&sha256={}", sha256(&foo_file));
    let (st, v) = upload(&s, &a.token, &query, foo_file.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["filename"], "foo-1.0-1-x86_64.pkg.tar.zst");
    let (st, v) = upload(&s, &a.token, &query, foo_file.clone()).await;
    assert_eq!(st, StatusCode::OK, "the same content again: {v}");
    assert_eq!(count_files(&archive.join("objects")), 1, "one copy");

    // Refused uploads leave nothing behind.
    let (st, v) = upload(&s, &a.token, "?name=bar&version=1.0-1", foo_file.clone()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("package_mismatch"))
    );
    let (st, v) = upload(&s, &a.token, "", b"not a package".to_vec()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("not_a_package"))
    );
    let wrong = format!("?sha256={}", sha256(b"other"));
    let (st, v) = upload(&s, &a.token, &wrong, foo_file.clone()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch"))
    );
    assert_eq!(count_files(&archive.join("objects")), 1);
    assert_eq!(count_files(&archive.join("tmp")), 0);

    // The snapshot repository: a database real pacman's format, the file.
    let base = format!("/repo/{pool}/current/lab/os/x86_64");
    let (st, db) = s.get_bytes(&format!("{base}/lab.db")).await;
    assert_eq!(st, StatusCode::OK);
    let entries = pacsync_core::syncdb::parse_sync_db(&db).expect("a sync database");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "foo");
    assert_eq!(
        entries[0].sha256.as_deref(),
        Some(sha256(&foo_file).as_str())
    );
    assert_eq!(entries[0].depends, ["glibc"]);
    let (st, served) = s
        .get_bytes(&format!("{base}/foo-1.0-1-x86_64.pkg.tar.zst"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(served, foo_file);
    ranges_of_a_file(
        &s,
        &format!("{base}/foo-1.0-1-x86_64.pkg.tar.zst"),
        &foo_file,
    )
    .await;

    // A newer target: foo 1.0 stays (history), an unreferenced file goes.
    assert_eq!(
        s.report(&a, &state(&[("foo", "2.0-1")])).await,
        StatusCode::NO_CONTENT
    );
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &a.token,
            json!({}),
        )
        .await;
    assert!(st.is_success());
    let stray = package("stray", "1-1", "nobody wants me");
    let (st, _) = upload(&s, &a.token, "", stray).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(count_files(&archive.join("objects")), 2);
    let (st, gc) = s.post("/api/archive/gc", &admin, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{gc}");
    assert_eq!(
        gc["removed"],
        json!(["stray-1-1-x86_64.pkg.tar.zst"]),
        "{gc}"
    );
    assert_eq!(gc["kept"], 1, "{gc}");
    assert_eq!(count_files(&archive.join("objects")), 1);
    let (st, old) = s
        .get_bytes(&format!("/api/archive/files/{}", sha256(&foo_file)))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "files by hash need a token");
    assert!(!old.is_empty());
    let (st, v) = s
        .call(
            Method::POST,
            "/api/archive/lookup",
            Some(&a.token),
            Some(json!({ "packages": [{ "name": "foo", "version": "1.0-1" }] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["packages"][0]["sha256"], sha256(&foo_file), "{v}");
    s.stop().await;
}

async fn a_full_archive_refuses_and_keeps_nothing(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let first = package("foo", "1.0-1", "x");
    let limit = (first.len() + 10).to_string();
    let Some((s, admin, pool, a)) =
        start(backend, &archive, Some(&limit), &[("foo", "1.0-1")]).await
    else {
        return;
    };
    // What the pool's target needs of the archive: nothing there yet.
    let storage = |status: &Value| -> Value {
        let pools = status["pools"].as_array().expect("pools");
        assert_eq!(pools.len(), 1, "{status}");
        assert_eq!(pools[0]["pool_id"], pool.as_str(), "{status}");
        assert_eq!(pools[0]["name"], "lab", "{status}");
        assert!(pools[0]["target_id"].is_string(), "{status}");
        let p = &pools[0];
        json!([
            p["packages"],
            p["archived"],
            p["damaged"],
            p["missing"],
            p["bytes"]
        ])
    };
    let (_, status) = s.get("/api/archive", &admin).await;
    assert_eq!(storage(&status), json!([1, 0, 0, 1, 0]));
    let first_len = first.len();
    let (st, v) = upload(&s, &a.token, "", first).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, status) = s.get("/api/archive", &admin).await;
    assert_eq!(storage(&status), json!([1, 1, 0, 0, first_len]));
    let big = package("bar", "1.0-1", &"y".repeat(4096));
    let (st, v) = upload(&s, &a.token, "", big).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "archive_full");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing was stored")),
        "{v}"
    );
    assert_eq!(count_files(&archive.join("objects")), 1);
    assert_eq!(count_files(&archive.join("tmp")), 0, "no partial file");
    let (st, status) = s.get("/api/archive", &a.token).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "machines do not read the status");
    let (_, status2) = s.get("/api/archive", &admin).await;
    assert_eq!(status2["files"], 1, "{status} {status2}");
    assert_eq!(status2["limit_bytes"].as_u64(), limit.parse().ok());
    s.stop().await;
}

async fn damage_is_reported_and_never_served(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let Some((s, admin, pool, a)) = start(backend, &archive, None, &[("foo", "1.0-1")]).await
    else {
        return;
    };
    let foo_file = package("foo", "1.0-1", "foo one");
    let (st, _) = upload(&s, &a.token, "", foo_file.clone()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, v) = s.post("/api/archive/verify", &admin, json!({})).await;
    assert_eq!(v["damaged"], json!([]), "{v}");

    let sha = sha256(&foo_file);
    let object = archive.join("objects").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&object).expect("stored");
    bytes[10] ^= 1;
    std::fs::write(&object, bytes).expect("corrupt");

    let (st, v) = s.post("/api/archive/verify", &admin, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let damaged = v["damaged"].as_array().expect("list");
    assert_eq!(damaged.len(), 1, "{v}");
    let (_, status) = s.get("/api/archive", &admin).await;
    let p = &status["pools"][0];
    assert_eq!(
        (&p["packages"], &p["archived"], &p["damaged"], &p["missing"]),
        (&json!(1), &json!(0), &json!(1), &json!(0)),
        "the damaged file counts as damaged, not archived: {status}"
    );
    assert!(
        damaged[0]
            .as_str()
            .is_some_and(|d| d.contains("foo-1.0-1-x86_64.pkg.tar.zst")),
        "{v}"
    );
    let (st, body) = s
        .get_bytes(&format!(
            "/repo/{pool}/current/lab/os/x86_64/foo-1.0-1-x86_64.pkg.tar.zst"
        ))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let body: Value = serde_json::from_slice(&body).expect("error body");
    assert_eq!(body["error"]["code"], "archive_damaged");
    // Nor any part of it.
    let path = format!("/repo/{pool}/current/lab/os/x86_64/foo-1.0-1-x86_64.pkg.tar.zst");
    for range in ["bytes=5-", "bytes=0-0", "bytes=999999-"] {
        let (st, _, body) = get_with(&s, &path, &[("range", range)]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{range}");
        let body: Value = serde_json::from_slice(&body).expect("error body");
        assert_eq!(body["error"]["code"], "archive_damaged", "{range}");
    }
    let (_, db) = s
        .get_bytes(&format!("/repo/{pool}/current/lab/os/x86_64/lab.db"))
        .await;
    assert!(
        pacsync_core::syncdb::parse_sync_db(&db)
            .expect("database")
            .is_empty(),
        "a damaged file is not listed"
    );

    // A fresh upload of the same content repairs it.
    let (st, v) = upload(&s, &a.token, "", foo_file.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.post("/api/archive/verify", &admin, json!({})).await;
    assert_eq!(v["damaged"], json!([]), "{v}");
    let (st, served) = s
        .get_bytes(&format!(
            "/repo/{pool}/current/lab/os/x86_64/foo-1.0-1-x86_64.pkg.tar.zst"
        ))
        .await;
    assert_eq!((st, served == foo_file), (StatusCode::OK, true));
    s.stop().await;
}
