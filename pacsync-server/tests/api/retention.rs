//! Cleanup of old states never removes what a target, a machine's current
//! state or a revert point still needs.

use pacsync_server::store::{content, now_ms, retention};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestServer, state};

crate::on_both_backends!(cleanup_keeps_what_is_needed);
crate::on_both_backends!(a_removed_state_sent_in_full_is_stored_again);

async fn cleanup_keeps_what_is_needed(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    let st: Vec<_> = (1..=7)
        .map(|i| state(&[("bash", &format!("5.{i}-1"))]))
        .collect();
    let hash = |i: usize| st[i - 1].content_hash().to_string();

    assert_eq!(s.report(&a, &st[0]).await, StatusCode::NO_CONTENT);
    let (code, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    for i in [2, 3, 6, 7] {
        assert_eq!(s.report(&a, &st[i - 1]).await, StatusCode::NO_CONTENT);
    }
    // b: state 1, synced (to 4), then moved on to 5. Its revert point is 1.
    assert_eq!(s.report(&b, &st[0]).await, StatusCode::NO_CONTENT);
    let (code, op) = s
        .post(&format!("/api/endpoints/{}/sync", b.id), &admin, json!({}))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(s.report(&b, &st[3]).await, StatusCode::NO_CONTENT);
    let (code, _) = s
        .post(
            &format!(
                "/api/operations/{}/progress",
                op["id"].as_str().expect("id")
            ),
            &b.token,
            json!({ "status": "succeeded" }),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.report(&b, &st[4]).await, StatusCode::NO_CONTENT);

    // Everything counts as old.
    let store = s.store.clone();
    let cleaned = store
        .write(|conn| retention::cleanup(conn, now_ms() + 3_600_000))
        .await
        .expect("cleanup");
    // a: 1,2,3,6 go (7 is current); b: 1,4 go (5 is current).
    assert_eq!(
        (cleaned.history, cleaned.states, cleaned.targets),
        (6, 4, 0),
        "{cleaned:?}"
    );
    let kept: Vec<bool> = {
        let hashes: Vec<String> = (1..=7).map(hash).collect();
        store
            .run(move |conn| {
                hashes
                    .iter()
                    .map(|h| content::has_state(conn, h))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .expect("lookup")
    };
    // 1: b's revert point; 5, 7: current states.
    assert_eq!(kept, vec![true, false, false, false, true, false, true]);

    let (code, v) = s
        .get(&format!("/api/endpoints/{}/states", a.id), &admin)
        .await;
    assert_eq!((code, v["total"].as_i64()), (StatusCode::OK, Some(1)));
    let (code, v) = s
        .get(&format!("/api/endpoints/{}/plan?kind=revert", b.id), &admin)
        .await;
    assert_eq!(
        (code, v["target_hash"].as_str()),
        (StatusCode::OK, Some(hash(1).as_str()))
    );
    let (code, v) = s
        .get(&format!("/api/endpoints/{}/plan", a.id), &admin)
        .await;
    assert_eq!(code, StatusCode::OK, "the target survives: {v}");
    // A machine going back to a removed state is asked for its content.
    assert_eq!(s.report(&a, &st[1]).await, StatusCode::NO_CONTENT);

    // Nothing is old under a real cutoff.
    let again = store
        .write(|conn| retention::cleanup(conn, now_ms() - 24 * 3_600_000))
        .await
        .expect("cleanup");
    assert_eq!(again, retention::Cleaned::default());
    s.stop().await;
}

/// An upload worker takes a content the server was seen to hold lately as
/// stored; if cleanup removed it since, the report stores it again.
async fn a_removed_state_sent_in_full_is_stored_again(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    // Long enough a report (256 bytes or more) to go to an upload worker.
    let names: Vec<String> = (0..20).map(|i| format!("package-{i:02}")).collect();
    let pkgs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1.0-1")).collect();
    let old = state(&pkgs);
    let hash = old.content_hash().to_string();
    assert_eq!(s.report(&a, &old).await, StatusCode::NO_CONTENT);
    let moved_on = state(&[("bash", "5.2-1")]);
    assert_eq!(s.report(&a, &moved_on).await, StatusCode::NO_CONTENT);

    let store = s.store.clone();
    let cleaned = store
        .write(|conn| retention::cleanup(conn, now_ms() + 3_600_000))
        .await
        .expect("cleanup");
    assert_eq!(cleaned.states, 1, "{cleaned:?}");
    let h = hash.clone();
    let held = move || {
        let h = h.clone();
        let store = store.clone();
        async move {
            store
                .run(move |conn| content::has_state(conn, &h))
                .await
                .expect("lookup")
        }
    };
    assert!(!held().await, "cleanup removed it");

    // The machine goes back to it and sends it whole straight away.
    let (code, v) = s
        .call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", a.id),
            Some(&a.token),
            Some(json!({ "hash": hash, "packages": old })),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{v}");
    assert!(held().await, "stored again");
    let (code, v) = s
        .get(&format!("/api/endpoints/{}/state", a.id), &admin)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["hash"], hash.as_str());
    assert_eq!(v["packages"].as_array().map(Vec::len), Some(20), "{v}");
    s.stop().await;
}
