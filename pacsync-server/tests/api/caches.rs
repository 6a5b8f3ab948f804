//! The read caches (list pages, token owners) never hide a change: what
//! a request changed shows in the next list, a revoked credential stops
//! working at once, and on PostgreSQL both cross to the other replicas.

use std::time::Duration;

use pacsync_server::api::cache::PAGE_STALE_MAX;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};

use crate::harness::{Backend, TestServer, expect_status, state};
use crate::push::{connect, next};

crate::on_both_backends!(
    lists_show_every_change_at_once,
    last_seen_shows_within_its_bound,
    revoked_credentials_stop_at_once
);

/// The list's items by name: (status, pool name).
fn by_name(list: &Value) -> Vec<(String, String, String)> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
                e["pool_name"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

async fn list(s: &TestServer, token: &str) -> Value {
    expect_status(
        StatusCode::OK,
        s.get("/api/endpoints?per_page=200", token).await,
    )
}

/// A state big enough to go through the upload workers.
fn big_state(version: &str) -> pacsync_core::state::PackageState {
    let names: Vec<String> = (0..20).map(|i| format!("package-{i:02}")).collect();
    let pkgs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), version)).collect();
    state(&pkgs)
}

async fn lists_show_every_change_at_once(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let viewer = s.login("viewer").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, None, "b").await;
    let first = list(&s, &viewer).await;
    assert_eq!(
        by_name(&first),
        vec![
            ("a".into(), "no_target".into(), "p".into()),
            ("b".into(), "unassigned".into(), "-".into())
        ]
    );
    // Viewer and admin see the same page.
    assert_eq!(list(&s, &admin).await, first);

    // A state report, a target, a rename, a pool move, a deletion: each
    // shows in the very next list.
    assert_eq!(
        s.report(&a, &big_state("1-1")).await,
        StatusCode::NO_CONTENT
    );
    expect_status(
        StatusCode::OK,
        s.post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await,
    );
    assert_eq!(by_name(&list(&s, &viewer).await)[0].1, "in_sync");
    assert_eq!(
        s.report(&a, &big_state("2-1")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(by_name(&list(&s, &viewer).await)[0].1, "ahead");
    // Pages of one filter share its total: the first page counts it, the
    // second reuses it, and a pool move changes it for both.
    let in_pool = |page: u32| format!("/api/endpoints?per_page=1&page={page}&pool_id={pool}");
    for page in [1, 2] {
        let got = expect_status(StatusCode::OK, s.get(&in_pool(page), &viewer).await);
        assert_eq!(got["total"].as_i64(), Some(1), "page {page}");
    }
    let behind = "/api/endpoints?status=behind";
    let got = expect_status(StatusCode::OK, s.get(behind, &viewer).await);
    assert_eq!(got["total"].as_i64(), Some(0));
    expect_status(
        StatusCode::OK,
        s.patch(
            &format!("/api/endpoints/{}", b.id),
            &admin,
            json!({ "name": "c", "pool_id": pool }),
        )
        .await,
    );
    assert_eq!(
        by_name(&list(&s, &viewer).await)[1],
        ("c".into(), "behind".into(), "p".into())
    );
    for page in [2, 1] {
        let got = expect_status(StatusCode::OK, s.get(&in_pool(page), &viewer).await);
        assert_eq!(got["total"].as_i64(), Some(2), "page {page}");
    }
    let got = expect_status(StatusCode::OK, s.get(&in_pool(2), &viewer).await);
    assert_eq!(by_name(&got)[0].0, "c");
    let got = expect_status(StatusCode::OK, s.get(behind, &viewer).await);
    assert_eq!(got["total"].as_i64(), Some(1));
    expect_status(
        StatusCode::OK,
        s.patch(
            &format!("/api/pools/{pool}"),
            &admin,
            json!({ "name": "renamed" }),
        )
        .await,
    );
    assert!(
        by_name(&list(&s, &viewer).await)
            .iter()
            .all(|(_, _, p)| p == "renamed")
    );
    assert_eq!(
        s.delete(&format!("/api/endpoints/{}", b.id), &admin).await,
        StatusCode::NO_CONTENT
    );
    let after = list(&s, &viewer).await;
    assert_eq!(
        (after["total"].as_i64(), by_name(&after).len()),
        (Some(1), 1)
    );

    // Entity tags: the page a client holds answers 304 while it is
    // current (or, past the page's second, comes again unchanged), and
    // never once something changed.
    let url = format!("{}/api/endpoints?per_page=200", s.base);
    let get = |etag: Option<String>| {
        let mut r = s.client.get(&url).bearer_auth(&viewer);
        if let Some(t) = etag {
            r = r.header(IF_NONE_MATCH, t);
        }
        r.send()
    };
    let r = get(None).await.expect("list");
    let etag = r.headers()[ETAG].to_str().expect("etag").to_owned();
    let body: Value = r.json().await.expect("json");
    let r = get(Some(etag.clone())).await.expect("list");
    match r.status() {
        StatusCode::NOT_MODIFIED => assert_eq!(r.headers()[ETAG], etag.as_str()),
        StatusCode::OK => assert_eq!(r.json::<Value>().await.expect("json"), body),
        other => panic!("{other}"),
    }
    assert_eq!(
        s.report(&a, &big_state("3-1")).await,
        StatusCode::NO_CONTENT
    );
    let r = get(Some(etag.clone())).await.expect("list");
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()[ETAG], etag.as_str());
    let changed: Value = r.json().await.expect("json");
    assert_ne!(
        changed["items"][0]["state_hash"],
        body["items"][0]["state_hash"]
    );
    s.stop().await;
}

/// An unchanged report moves only `last_seen_at`, which bumps no counter:
/// the list shows it once the page held is made again, at most
/// [`PAGE_STALE_MAX`] after that page's render began, while showing the
/// rest as it was.
async fn last_seen_shows_within_its_bound(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let viewer = s.login("viewer").await;
    let m = s.enroll(&admin, None, "m").await;
    let st = state(&[("x", "1-1")]);
    assert_eq!(s.report(&m, &st).await, StatusCode::NO_CONTENT);
    let before = list(&s, &viewer).await;
    let seen = |list: &Value| list["items"][0]["last_seen_at"].as_str().map(str::to_owned);
    let old = seen(&before);
    // Unchanged reports until one lands in a later millisecond.
    let mut new = old.clone();
    for _ in 0..100 {
        assert_eq!(s.report(&m, &st).await, StatusCode::NO_CONTENT);
        new = s.endpoint(&admin, &m.id).await["last_seen_at"]
            .as_str()
            .map(str::to_owned);
        if new != old {
            break;
        }
    }
    assert_ne!(new, old, "an unchanged report moves last_seen_at");
    // The page held may have been made just before the report, so allow
    // the bound from now, and a second for a loaded machine.
    let deadline = std::time::Instant::now() + PAGE_STALE_MAX + Duration::from_secs(1);
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    loop {
        let got = list(&s, &viewer).await;
        let shown = seen(&got);
        assert!(shown == old || shown == new, "{shown:?}");
        let mut same = got.clone();
        same["items"][0]["last_seen_at"] = before["items"][0]["last_seen_at"].clone();
        assert_eq!(same, before, "nothing else moved");
        if shown == new {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen_at still {old:?} in the list, {new:?} in the machine"
        );
        pace.tick().await;
    }
    s.stop().await;
}

async fn revoked_credentials_stop_at_once(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let (ci_id, ci) = s.create_api_token(&admin, "ci", "viewer").await;
    let m = s.enroll(&admin, Some(&pool), "m").await;
    // Both used (and so remembered) before they are revoked.
    assert_eq!(s.get("/api/endpoints", &ci).await.0, StatusCode::OK);
    assert_eq!(
        s.report(&m, &big_state("1-1")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.delete(&format!("/api/api-tokens/{ci_id}"), &admin).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/endpoints", &ci).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.delete(&format!("/api/endpoints/{}", m.id), &admin).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.report(&m, &big_state("1-1")).await,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

/// On PostgreSQL, what one replica changes reaches the other's caches
/// through the notification channel: a status change its list shows, and
/// a revocation (announced on its own channel, delivered in commit order
/// before the event the test waits for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_cross_replicas_into_their_caches() {
    let Some(one) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let two = one.replica().await.expect("a replica on the same database");
    let admin = one.login("admin").await;
    let admin_two = two.login("admin").await;
    let pool = one.create_pool(&admin, "p").await;
    let a = one.enroll(&admin, Some(&pool), "a").await;
    assert_eq!(
        one.report(&a, &big_state("1-1")).await,
        StatusCode::NO_CONTENT
    );
    expect_status(
        StatusCode::OK,
        one.post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await,
    );
    let m = one.enroll(&admin, Some(&pool), "m").await;
    let (ci_id, ci) = one.create_api_token(&admin, "ci", "viewer").await;
    let mut ws = connect(&two, &admin_two, false).await;
    // Replica two holds the page and the token's owner.
    assert_eq!(
        by_name(&list(&two, &ci).await)[1],
        ("m".into(), "behind".into(), "p".into())
    );
    assert_eq!(
        one.delete(&format!("/api/api-tokens/{ci_id}"), &admin)
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        one.report(&m, &big_state("1-1")).await,
        StatusCode::NO_CONTENT
    );
    // Events of earlier changes (m's enrollment) may still be arriving.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let status = next(&mut ws, "endpoint_status", left).await;
        if status["endpoint_id"] == m.id.as_str() && status["status"] == "in_sync" {
            break;
        }
    }
    assert_eq!(by_name(&list(&two, &admin_two).await)[1].1, "in_sync");
    assert_eq!(
        two.get("/api/endpoints", &ci).await.0,
        StatusCode::UNAUTHORIZED
    );
    two.stop().await;
    one.stop().await;
}
