//! Repository reports (content-addressed) and the repository analysis,
//! whose exclusions join the pool's policy.

use std::collections::BTreeMap;

use pacsync_core::analysis::RepoIndex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, Machine, TestServer, state};

crate::on_both_backends!(repositories_feed_the_pool_policy);

fn repo(name: &str, pkgs: &[(&str, &str)]) -> (RepoIndex, String) {
    let index = RepoIndex {
        name: name.into(),
        packages: pkgs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).into()))
            .collect::<BTreeMap<_, _>>(),
    };
    let hash = index.content_hash();
    (index, hash)
}

async fn put(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PUT, "/api/repositories", Some(token), Some(body))
        .await
}

/// Reports the way a daemon does: hashes, then the contents asked for.
async fn report(s: &TestServer, m: &Machine, repos: &[&(RepoIndex, String)]) {
    let hashes: Vec<Value> = repos
        .iter()
        .map(|(r, h)| json!({ "name": r.name, "hash": h }))
        .collect();
    let (st, v) = put(s, &m.token, json!({ "repositories": hashes })).await;
    if st == StatusCode::NO_CONTENT {
        return;
    }
    assert_eq!(v["error"]["code"], "repository_content_required", "{v}");
    let missing = v["error"]["details"]["missing"]
        .as_array()
        .expect("missing");
    let full: Vec<Value> = repos
        .iter()
        .map(|(r, h)| {
            if missing.contains(&json!(h)) {
                json!({ "name": r.name, "hash": h, "packages": r.packages })
            } else {
                json!({ "name": r.name, "hash": h })
            }
        })
        .collect();
    let (st, v) = put(s, &m.token, json!({ "repositories": full })).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}

async fn repositories_feed_the_pool_policy(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "lab").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    let full = state(&[
        ("bash", "5.2-1"),
        ("linux", "6.9-1"),
        ("steam", "1.0-1"),
        ("yay", "12-1"),
    ]);
    assert_eq!(s.report(&a, &full).await, StatusCode::NO_CONTENT);
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // b lacks steam: behind, until the analysis says b cannot have it.
    let no_steam = state(&[("bash", "5.2-1"), ("linux", "6.9-1"), ("yay", "12-1")]);
    assert_eq!(s.report(&b, &no_steam).await, StatusCode::NO_CONTENT);
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "behind");

    let core = repo("core", &[("bash", "5.2-1"), ("linux", "6.9-1")]);
    let extra = repo("extra", &[("steam", "1.0-1")]);
    // Hashes alone: the server asks for both contents.
    let (st, v) = put(
        &s,
        &a.token,
        json!({ "repositories": [{ "name": "core", "hash": core.1 }, { "name": "extra", "hash": extra.1 }] }),
    )
    .await;
    assert_eq!(
        (
            st,
            v["error"]["details"]["missing"].as_array().map(Vec::len)
        ),
        (StatusCode::CONFLICT, Some(2))
    );
    report(&s, &a, &[&core, &extra]).await;
    // b shares core's mirror: its hash alone is enough.
    let (st, v) = put(
        &s,
        &b.token,
        json!({ "repositories": [{ "name": "core", "hash": core.1 }] }),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");

    // steam is only in a's repositories, yay in nobody's: both excluded,
    // b is in sync, and the machine's target carries the names.
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "in_sync");
    let (st, t) = s
        .get(&format!("/api/endpoints/{}/target", b.id), &b.token)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["policy"]["exclusions"]["names"], json!(["steam", "yay"]));
    // The target itself keeps them.
    assert!(t["packages"].get("steam").is_some(), "{t}");

    let (st, v) = s
        .get(&format!("/api/repositories/analyze?pool={pool}"), &admin)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["summary"]["partial"], 1);
    assert_eq!(v["summary"]["nowhere"], 1);
    assert_eq!(v["summary"]["everywhere"], 2);
    assert_eq!(v["columns"].as_array().map(Vec::len), Some(2));
    let steam = v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "steam")
        .expect("steam row");
    assert_eq!(steam["excluded"], "not_in_every_repository");

    let (st, v) = s.get("/api/repositories", &admin).await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(2)));
    let uses: Vec<(String, i64)> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_owned(),
                r["machines"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(uses, vec![("core".into(), 2), ("extra".into(), 1)]);
    let (st, v) = s
        .get(
            &format!(
                "/api/repositories?pool_id={}",
                "7c9e6679-7425-40de-944b-e07fc1f90ae7"
            ),
            &admin,
        )
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(0)));

    // An admin insists on steam: b is behind again, the pool shows it.
    let (st, p) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            Some(json!({ "repository_overrides": { "include": ["steam"] } })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["analysis_excluded"], json!(["yay"]));
    assert_eq!(p["repository_overrides"]["include"], json!(["steam"]));
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "behind");
    // A manual exclusion of bash joins the list.
    let (st, p) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            Some(json!({ "repository_overrides": { "include": ["steam"], "exclude": ["bash"] } })),
        )
        .await;
    assert_eq!(
        (st, &p["analysis_excluded"]),
        (StatusCode::OK, &json!(["bash", "yay"]))
    );

    // b gains extra: steam is everywhere now and stays compared.
    report(&s, &b, &[&core, &extra]).await;
    let (_, p) = s.get(&format!("/api/pools/{pool}"), &admin).await;
    assert_eq!(p["analysis_excluded"], json!(["bash", "yay"]));

    // Bad reports.
    let (st, v) = put(&s, &a.token, json!({ "repositories": [{ "name": "core", "hash": extra.1, "packages": core.0.packages }] })).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch"))
    );
    let (st, v) = put(
        &s,
        &a.token,
        json!({ "repositories": [{ "name": "core", "hash": "xyz" }] }),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_hash"))
    );
    let (st, _) = put(&s, &admin, json!({ "repositories": [] })).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = put(&s, &a.token, json!({ "repositories": [], "extra": 1 })).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = s.get("/api/repositories/analyze", &admin).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (st, _) = s
        .get(
            "/api/repositories/analyze?pool=7c9e6679-7425-40de-944b-e07fc1f90ae7",
            &admin,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_switched_off_excludes_nothing() {
    let s = TestServer::start_with(Backend::Sqlite, &[("ENABLE_REPOSITORY_ANALYSIS", "false")])
        .await
        .expect("sqlite");
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "lab").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    assert_eq!(
        s.report(&a, &state(&[("yay", "12-1")])).await,
        StatusCode::NO_CONTENT
    );
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    report(&s, &a, &[&repo("core", &[("bash", "5.2-1")])]).await;
    let (st, t) = s
        .get(&format!("/api/endpoints/{}/target", a.id), &a.token)
        .await;
    assert_eq!(
        (st, &t["policy"]["exclusions"]["names"]),
        (StatusCode::OK, &json!([]))
    );
    let (st, v) = s
        .get(&format!("/api/repositories/analyze?pool={pool}"), &admin)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("analysis_disabled"))
    );
    s.stop().await;
}
