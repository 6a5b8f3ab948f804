//! Users' sessions and their management: logging out ends a token at
//! once; role changes, password resets and deletions (admins only) count
//! from the next request; the last admin can be neither demoted nor
//! deleted; every change is in the audit log.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Backend, TestServer};

crate::on_both_backends!(sessions_end_at_logout, user_management);

const BOB_PASSWORD: &str = "bob's password";

async fn login_as(s: &TestServer, name: &str, password: &str) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({ "username": name, "password": password })),
    )
    .await
}

async fn bob_token(s: &TestServer) -> String {
    let (st, v) = login_as(s, "bob", BOB_PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["access_token"].as_str().expect("token").to_owned()
}

async fn patch(s: &TestServer, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PATCH, path, Some(token), Some(body)).await
}

async fn delete(s: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    s.call(Method::DELETE, path, Some(token), None).await
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

async fn sessions_end_at_logout(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let first = s.login("operator").await;
    let second = s.login("operator").await;
    assert_ne!(first, second, "each login is its own session");
    for t in [&first, &second] {
        assert_eq!(s.get("/api/pools", t).await.0, StatusCode::OK);
    }
    // A push channel opened with the session closes with it.
    let pool = s.create_pool(&s.login("admin").await, "p").await;
    let mut socket = crate::push::connect(&s, &first, false).await;
    let admin0 = s.login("admin").await;
    let policy = |keep: bool| json!({ "keep_extras": keep });
    let (st, v) = patch(&s, &format!("/api/pools/{pool}"), &admin0, policy(true)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    crate::push::next(&mut socket, "policy_changed", Duration::from_secs(5)).await;
    let (st, v) = s.post("/api/auth/logout", &first, json!({})).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, v) = patch(&s, &format!("/api/pools/{pool}"), &admin0, policy(false)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(t))) => {
                    assert!(!t.contains("policy_changed"), "an ended session heard {t}")
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the socket closes");
    assert_eq!(closed, Some(4001));
    // Served from the cache a moment ago, refused now.
    let (st, v) = s.get("/api/pools", &first).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _) = s.post("/api/auth/logout", &first, json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("/api/pools", &second).await.0, StatusCode::OK);
    // API tokens have no session to end; they are revoked instead.
    let admin = s.login("admin").await;
    let (_, t) = s
        .post(
            "/api/api-tokens",
            &admin,
            json!({ "name": "ci", "role": "viewer" }),
        )
        .await;
    let api_token = t["token"].as_str().expect("token").to_owned();
    let (st, v) = s.post("/api/auth/logout", &api_token, json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // A second replica learns of a logout too.
    if let Some(r) = s.replica().await {
        let token = s.login("viewer").await;
        assert_eq!(r.get("/api/pools", &token).await.0, StatusCode::OK);
        assert_eq!(
            s.post("/api/auth/logout", &token, json!({})).await.0,
            StatusCode::NO_CONTENT
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (st, _) = r.get("/api/pools", &token).await;
            if st == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replica still takes the ended session: {st}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        r.stop().await;
    }
    s.stop().await;
}

async fn user_management(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let (_, users) = s.get("/api/users", &admin).await;
    let admin_id = users["items"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "admin"))
        .and_then(|u| u["id"].as_str())
        .expect("admin listed")
        .to_owned();

    // The only admin can be neither demoted nor deleted, by anyone.
    let me = format!("/api/users/{admin_id}");
    let (st, v) = patch(&s, &me, &admin, json!({ "role": "operator" })).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, Some("last_admin")),
        "{v}"
    );
    let (st, v) = delete(&s, &me, &admin).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, Some("last_admin")),
        "{v}"
    );
    let (_, users) = s.get("/api/users", &admin).await;
    assert_eq!(users["total"], 3, "{users}");

    let (st, bob) = s
        .post(
            "/api/users",
            &admin,
            json!({ "name": "bob", "password": BOB_PASSWORD, "role": "operator" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bob}");
    let bob_path = format!("/api/users/{}", bob["id"].as_str().expect("id"));
    let bob = bob_token(&s).await;
    assert_eq!(s.get("/api/users", &bob).await.0, StatusCode::FORBIDDEN);

    // Bad requests change nothing.
    for (body, status) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "password": "short" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "role": "root" }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "name": "robert" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (st, v) = patch(&s, &bob_path, &admin, body.clone()).await;
        assert!(
            st == status || st == StatusCode::BAD_REQUEST,
            "{body}: {st} {v}"
        );
    }
    let missing = "/api/users/7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let (st, _) = patch(&s, missing, &admin, json!({ "role": "viewer" })).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(delete(&s, missing, &admin).await.0, StatusCode::NOT_FOUND);

    // A new role counts from the next request, in the same session.
    let (st, v) = patch(&s, &bob_path, &admin, json!({ "role": "admin" })).await;
    assert_eq!(
        (st, v["role"].as_str()),
        (StatusCode::OK, Some("admin")),
        "{v}"
    );
    assert_eq!(s.get("/api/users", &bob).await.0, StatusCode::OK);
    // Two admins now: one may step down, and then the other is the last.
    let (st, v) = patch(&s, &me, &bob, json!({ "role": "viewer" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.get("/api/users", &admin).await.0, StatusCode::FORBIDDEN);
    let (st, v) = patch(&s, &bob_path, &bob, json!({ "role": "operator" })).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, Some("last_admin")),
        "{v}"
    );
    let (st, v) = patch(&s, &me, &bob, json!({ "role": "admin" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // A new password ends every session of the user; the old one fails.
    let bob_again = bob_token(&s).await;
    let (st, v) = patch(
        &s,
        &bob_path,
        &admin,
        json!({ "password": "a new password" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for t in [&bob, &bob_again] {
        assert_eq!(s.get("/api/pools", t).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_as(&s, "bob", BOB_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = login_as(&s, "bob", "a new password").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bob = v["access_token"].as_str().expect("token").to_owned();

    // Admins race to delete each other: one admin always remains.
    let admin_path = me.clone();
    let (a, b) = tokio::join!(delete(&s, &bob_path, &admin), delete(&s, &admin_path, &bob));
    assert!(
        !(a.0 == StatusCode::NO_CONTENT && b.0 == StatusCode::NO_CONTENT),
        "both admins deleted: {a:?} {b:?}"
    );
    let survivor = if a.0 == StatusCode::NO_CONTENT {
        admin.clone()
    } else {
        assert_eq!(b.0, StatusCode::NO_CONTENT, "{a:?} {b:?}");
        bob.clone()
    };
    let (st, users) = s.get("/api/users", &survivor).await;
    assert_eq!(st, StatusCode::OK, "{users}");
    let admins = users["items"]
        .as_array()
        .map_or(0, |u| u.iter().filter(|u| u["role"] == "admin").count());
    assert_eq!(admins, 1, "{users}");
    // The deleted one's session went with them.
    let gone = if survivor == admin { &bob } else { &admin };
    assert_eq!(s.get("/api/pools", gone).await.0, StatusCode::UNAUTHORIZED);

    let (_, audit) = s.get("/api/audit?per_page=100", &survivor).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .map(|i| i.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    for a in ["user.role_change", "user.password_reset", "user.delete"] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    let reset = audit["items"]
        .as_array()
        .and_then(|i| i.iter().find(|e| e["action"] == "user.password_reset"))
        .expect("reset entry");
    assert_eq!(reset["details"]["sessions_ended"], 2, "{reset}");
    assert_eq!(reset["actor"], "user:admin");
    s.stop().await;
}
