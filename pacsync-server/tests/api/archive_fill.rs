//! The archive filled from an upstream mirror (a real `repo-add`
//! repository served over HTTP): after set-latest the files only the
//! mirror has arrive with the sha256 its database records, a dropped
//! connection is resumed with a Range request, `.sig` files come along,
//! and a file that does not match the database is refused without a trace.

use std::path::Path;
use std::time::{Duration, Instant};

use pacsync_tests::{PackageSpec, Repo, noise};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestServer, assert_error, expect_status, sha256, state};
use crate::mirror::Mirror;

pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Waits until the archive reports a finished fill of `target_id`.
async fn finished_fill(s: &TestServer, admin: &str, target_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = s.get("/api/archive", admin).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let done = v["fills"].as_array().and_then(|fills| {
            fills
                .iter()
                .find(|f| f["target_id"] == target_id && !f["finished_at"].is_null())
                .cloned()
        });
        if let Some(f) = done {
            return f;
        }
        assert!(Instant::now() < deadline, "no finished fill: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_from_a_mirror_resumes_and_refuses_a_wrong_file() {
    let repo = Repo::new("core").expect("repo");
    let alpha = PackageSpec::new("alpha", "1.0-1").file("usr/share/alpha/blob", noise(400_000, 7));
    let beta = PackageSpec::new("beta", "2.0-1").file("usr/share/beta/data", "beta");
    let gamma = PackageSpec::new("gamma", "1.0-1").file("usr/share/gamma/data", "as listed");
    let built = repo
        .add(&[alpha.clone(), beta.clone(), gamma.clone()])
        .expect("repo-add");
    let file_of = |spec: &PackageSpec| {
        built
            .iter()
            .find(|p| p.ends_with(spec.filename()))
            .expect("built")
            .clone()
    };
    let beta_sig = b"a detached signature".to_vec();
    let mut sig_path = file_of(&beta).into_os_string();
    sig_path.push(".sig");
    std::fs::write(&sig_path, &beta_sig).expect("sig");
    // gamma's file is replaced after repo-add: the database's sha256 no
    // longer matches what the mirror serves.
    let other = tempfile::tempdir().expect("dir");
    let wrong = gamma
        .clone()
        .file("usr/share/gamma/data", "something else")
        .build(other.path())
        .expect("build");
    std::fs::copy(&wrong, file_of(&gamma)).expect("replace");

    let mirror = Mirror::start(&[("core", repo.dir())]);
    let alpha_bytes = std::fs::read(file_of(&alpha)).expect("alpha");
    let cut = alpha_bytes.len() / 2;
    mirror.cut_once(&alpha.filename(), cut);

    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let archive_dir = archive.display().to_string();
    let url = mirror.server_url();
    let Some(s) = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("ARCHIVE_DIR", archive_dir.as_str()),
            ("ARCHIVE_MIRRORS", url.as_str()),
            ("ARCHIVE_MIRROR_REPOS", "core"),
        ],
    )
    .await
    else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "lab").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let packages = [("alpha", "1.0-1"), ("beta", "2.0-1")];
    assert_eq!(
        s.report(&a, &state(&packages)).await,
        StatusCode::NO_CONTENT
    );
    let asked = Instant::now();
    let target = s.set_latest(&a).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "set-latest does not wait for the fill"
    );

    let fill = finished_fill(&s, &admin, &target).await;
    assert_eq!(fill["failed"], json!([]), "{fill}");
    assert_eq!(
        fill["stored"],
        json!([alpha.filename(), beta.filename()]),
        "{fill}"
    );
    let ranges = mirror.requests_for(&alpha.filename());
    assert_eq!(ranges.len(), 2, "one cut transfer, one resumed: {ranges:?}");
    let resumed_at: usize = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Range request: {ranges:?}"));
    assert!(resumed_at > 0 && resumed_at <= cut, "{ranges:?}");

    // Stored under their hashes, whole, and served as the snapshot.
    for spec in [&alpha, &beta] {
        let bytes = std::fs::read(file_of(spec)).expect("mirror file");
        let sha = sha256(&bytes);
        let stored = archive.join("objects").join(&sha[..2]).join(&sha);
        assert_eq!(std::fs::read(&stored).expect("stored"), bytes);
        let served = s
            .get_bytes(&format!(
                "/repo/{pool}/current/core/os/x86_64/{}",
                spec.filename()
            ))
            .await;
        assert_eq!(served, (StatusCode::OK, bytes));
    }
    let sig = s
        .get_bytes(&format!(
            "/repo/{pool}/current/core/os/x86_64/{}.sig",
            beta.filename()
        ))
        .await;
    assert_eq!(sig, (StatusCode::OK, beta_sig));

    // An admin starts a fill through the API: 202 at once, and a new
    // report for the target follows (nothing left to fetch this time).
    let (_, viewer) = s.create_api_token(&admin, "watcher", "viewer").await;
    assert_error(
        s.post("/api/archive/fill", &viewer, json!({ "pool": "lab" }))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        s.post("/api/archive/fill", &admin, json!({ "pool": "nowhere" }))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        s.post(
            "/api/archive/fill",
            &admin,
            json!({ "pool": "lab", "extra": 1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    let empty = s.create_pool(&admin, "empty").await;
    assert_error(
        s.post("/api/archive/fill", &admin, json!({ "pool": empty }))
            .await,
        StatusCode::CONFLICT,
        "no_target",
    );
    let before = fill["started_at"].as_i64().expect("started_at");
    let started = expect_status(
        StatusCode::ACCEPTED,
        s.post("/api/archive/fill", &admin, json!({ "pool": "lab" }))
            .await,
    );
    assert_eq!(
        (started["pool_id"].as_str(), started["target_id"].as_str()),
        (Some(pool.as_str()), Some(target.as_str()))
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let again = loop {
        let f = finished_fill(&s, &admin, &target).await;
        if f["started_at"].as_i64().is_some_and(|t| t > before) {
            break f;
        }
        assert!(Instant::now() < deadline, "no new fill: {f}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (again["missing"].as_u64(), &again["failed"]),
        (Some(0), &json!([])),
        "{again}"
    );

    // gamma: the mirror's file does not have the database's sha256.
    let packages = [("alpha", "1.0-1"), ("beta", "2.0-1"), ("gamma", "1.0-1")];
    assert_eq!(
        s.report(&a, &state(&packages)).await,
        StatusCode::NO_CONTENT
    );
    let target = s.set_latest(&a).await;
    let fill = finished_fill(&s, &admin, &target).await;
    assert_eq!(fill["missing"], 1, "{fill}");
    assert_eq!(fill["stored"], json!([]), "{fill}");
    let failed = fill["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{fill}");
    assert_eq!(failed[0]["name"], "gamma");
    assert!(
        failed[0]["reason"].as_str().is_some_and(
            |r| r.contains("the mirror's database says") && r.contains("nothing was stored")
        ),
        "{fill}"
    );
    assert_eq!(
        files_under(&archive.join("objects")).len(),
        2,
        "nothing stored"
    );
    assert_eq!(
        files_under(&archive.join("tmp")),
        Vec::<std::path::PathBuf>::new()
    );
    let (_, v) = s.post("/api/archive/verify", &admin, json!({})).await;
    assert_eq!(
        (v["checked"].as_u64(), &v["damaged"]),
        (Some(2), &json!([])),
        "{v}"
    );
    s.stop().await;
}
