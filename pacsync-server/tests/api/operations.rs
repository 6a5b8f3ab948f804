//! Operations (sync, revert, cancel, progress) and credentials (refresh
//! tokens, enrollment tokens, users).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestServer, state};

crate::on_both_backends!(operations_lifecycle, tokens_and_refresh);

async fn operations_lifecycle(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    let pool = s.create_pool(&admin, "servers").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    let old = state(&[("bash", "5.2-1")]);
    let new = state(&[("bash", "5.3-1")]);
    assert_eq!(s.report(&a, &new).await, StatusCode::NO_CONTENT);
    assert_eq!(s.report(&b, &old).await, StatusCode::NO_CONTENT);
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/sync", b.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_target"))
    );
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "behind");
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/revert", b.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("nothing_to_revert"))
    );

    let (st, op) = s
        .post(
            &format!("/api/endpoints/{}/sync", b.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{op}");
    assert_eq!(op["status"], "queued");
    let op_id = op["id"].as_str().expect("id").to_owned();
    // The machine learns of the queued request by asking for it.
    let (st, v) = s
        .get(
            &format!("/api/endpoints/{}/operations?status=queued", b.id),
            &b.token,
        )
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(1)), "{v}");
    assert_eq!(v["items"][0]["id"], op_id.as_str());
    let (st, v) = s
        .get(
            &format!("/api/endpoints/{}/operations?status=bogus", b.id),
            &b.token,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "syncing");
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/sync", b.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("operation_in_progress"))
    );
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", b.id),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("operation_in_progress"))
    );

    // The machine works through it.
    let progress = format!("/api/operations/{op_id}/progress");
    let (st, v) = s
        .post(
            &progress,
            &b.token,
            json!({ "status": "running", "progress": 40, "message": "downloading" }),
        )
        .await;
    assert_eq!(
        (st, v["progress"].as_i64()),
        (StatusCode::OK, Some(40)),
        "{v}"
    );
    let (st, _) = s
        .post(&progress, &a.token, json!({ "status": "running" }))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(&progress, &operator, json!({ "status": "running" }))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(s.report(&b, &new).await, StatusCode::NO_CONTENT);
    let (st, v) = s
        .post(&progress, &b.token, json!({ "status": "succeeded" }))
        .await;
    assert_eq!(
        (st, v["status"].as_str(), v["progress"].as_i64()),
        (StatusCode::OK, Some("succeeded"), Some(100))
    );
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "in_sync");
    let (st, v) = s
        .post(&progress, &b.token, json!({ "status": "failed" }))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("operation_finished"))
    );

    // Revert goes back to the state before that sync.
    let (st, v) = s
        .get(
            &format!("/api/endpoints/{}/plan?kind=revert", b.id),
            &operator,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["target_hash"].as_str(),
            v["summary"]["downgrade"].as_i64()
        ),
        (Some(old.content_hash().to_string().as_str()), Some(1))
    );
    let (st, rv) = s
        .post(
            &format!("/api/endpoints/{}/revert", b.id),
            &b.token,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{rv}");
    assert_eq!(
        rv["target_hash"].as_str(),
        Some(old.content_hash().to_string().as_str())
    );
    let rv_id = rv["id"].as_str().expect("id");
    // A failed operation shows as error until a later one succeeds.
    let (st, _) = s
        .post(
            &format!("/api/operations/{rv_id}/progress"),
            &b.token,
            json!({ "status": "failed", "message": "pacman: conflict" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ep = s.endpoint(&admin, &b.id).await;
    assert_eq!(
        (ep["status"].as_str(), ep["last_error"].as_str()),
        (Some("error"), Some("pacman: conflict"))
    );

    // Cancel: queued → cancelled; twice → 409; viewers may not.
    let (st, op) = s
        .post(&format!("/api/endpoints/{}/sync", b.id), &admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let cancel = format!("/api/operations/{}/cancel", op["id"].as_str().expect("id"));
    let viewer = s.login("viewer").await;
    let (st, _) = s.post(&cancel, &viewer, json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.post(&cancel, &operator, json!({})).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (st, v) = s.post(&cancel, &operator, json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("operation_cancelled"))
    );
    let (st, v) = s
        .post(
            &format!(
                "/api/operations/{}/progress",
                op["id"].as_str().expect("id")
            ),
            &b.token,
            json!({ "status": "running" }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("operation_cancelled"))
    );

    let (st, v) = s.get(&format!("/api/operations/{op_id}"), &viewer).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("succeeded"))
    );
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/operations", b.id), &b.token)
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(3)));
    let (st, v) = s
        .get(
            &format!("/api/pools/{pool}/operations?per_page=10"),
            &viewer,
        )
        .await;
    // a's set-latest plus b's three.
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(4)));
    let (st, v) = s
        .get(
            &format!("/api/pools/{pool}/operations?status=cancelled"),
            &viewer,
        )
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(1)));
    let (st, v) = s
        .get(
            &format!("/api/endpoints/{}/operations?status=queued", b.id),
            &b.token,
        )
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(0)));
    s.stop().await;
}

async fn tokens_and_refresh(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let m = s.enroll(&admin, None, "m").await;
    let (st, v) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": m.refresh })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_access = v["access_token"].as_str().expect("access").to_owned();
    let new_refresh = v["refresh_token"].as_str().expect("refresh").to_owned();
    let (st, _) = s
        .get(&format!("/api/endpoints/{}", m.id), &new_access)
        .await;
    assert_eq!(st, StatusCode::OK);
    // Reusing the spent token revokes the session: even the new tokens die.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": m.refresh })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("refresh_token_reused"))
    );
    let (st, _) = s
        .get(&format!("/api/endpoints/{}", m.id), &new_access)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": new_refresh })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": "psr_nope" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Enrollment tokens: listed without the secret, revocable.
    let (st, v) = s
        .post(
            "/api/enrollment-tokens",
            &admin,
            json!({ "expires_in": 3600 }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (tid, token) = (
        v["id"].as_str().expect("id").to_owned(),
        v["token"].as_str().expect("t").to_owned(),
    );
    let (st, v) = s.get("/api/enrollment-tokens", &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!v.to_string().contains(&token));
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/enrollment-tokens/{tid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s
        .call(
            Method::POST,
            "/api/endpoints/register",
            None,
            Some(json!({ "enrollment_token": token, "name": "x" })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_enrollment_token"))
    );
    let (st, v) = s
        .post(
            "/api/enrollment-tokens",
            &admin,
            json!({ "pool": "no-such-pool" }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_pool"))
    );

    // Users: admin creates, the new user logs in; wrong password refused.
    let (st, v) = s
        .post(
            "/api/users",
            &admin,
            json!({ "name": "ops2", "password": "long enough pw", "role": "operator" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "username": "ops2", "password": "long enough pw" })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "username": "ops2", "password": "wrong" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "username": "nobody", "password": "wrong" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .post(
            "/api/users",
            &admin,
            json!({ "name": "ops2", "password": "long enough pw", "role": "viewer" }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );
    let (st, v) = s.get("/api/users", &admin).await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(4)));
    s.stop().await;
}
