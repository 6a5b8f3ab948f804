//! Bad input of every kind is a 4xx with the error body, never a 500.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestServer, assert_error_body, state};

crate::on_both_backends!(bad_input_is_refused_cleanly);

impl TestServer {
    fn one_shot(&self) -> reqwest::Client {
        one_shot_client()
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = self
            .one_shot()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.expect("a JSON body");
        assert_error_body(status, &v);
        (status, v)
    }
}

/// A client that never reuses a connection: the server closes one after
/// refusing a body it did not read, and a pooled client could otherwise
/// send its next request into that closing connection.
fn one_shot_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

async fn bad_input_is_refused_cleanly(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let m = s.enroll(&admin, Some(&pool), "m").await;
    let json_ct = Some("application/json");
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().map(str::to_owned);

    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            json_ct,
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            json_ct,
            b"{\"name\": 5}".to_vec(),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            json_ct,
            br#"{"name": "x", "bogus": 1}"#.to_vec(),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bogus"),
        "{v}"
    );
    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            None,
            br#"{"name": "x"}"#.to_vec(),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            json_ct,
            b"[1,2,3]".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Just over the limit: the whole body fits in the socket buffers, so
    // the client always reads the 413.
    let (st, v) = s
        .raw(
            Method::POST,
            "/api/pools",
            &admin,
            json_ct,
            vec![b'a'; 70 * 1024],
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (st, v) = s
        .raw(
            Method::POST,
            &format!("/api/endpoints/{}/set-latest", m.id),
            &m.token,
            json_ct,
            vec![b'x'; 100_000],
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // 10 MB: under the state limit (where it then fails as JSON); over the
    // general limit, where the server answers 413 as soon as it sees the
    // length and closes, so the client may be cut off mid-upload instead.
    let state_path = format!("/api/endpoints/{}/state", m.id);
    let big = vec![b'a'; 10 * 1024 * 1024];
    let (st, v) = s
        .raw(Method::PUT, &state_path, &m.token, json_ct, big.clone())
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    // Repository reports share the large limit.
    let (st, v) = s
        .raw(
            Method::PUT,
            "/api/repositories",
            &m.token,
            json_ct,
            big.clone(),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    for (method, path, token, len) in [
        (Method::POST, "/api/pools".to_owned(), &admin, big.len()),
        (Method::PUT, state_path.clone(), &m.token, 17 * 1024 * 1024),
    ] {
        let sent = s
            .one_shot()
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(vec![b' '; len])
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let v: serde_json::Value = resp.json().await.expect("json");
                assert_error_body(status, &v);
                assert_eq!(
                    (status, code(&v).as_deref()),
                    (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
                );
            }
            Err(e) => assert!(e.is_request(), "{path}: {e}"),
        }
    }
    // The server is fine afterwards.
    let (st, _) = s.get("/api/pools", &admin).await;
    assert_eq!(st, StatusCode::OK);

    // State reports: bad hash, wrong package types.
    let (st, v) = s
        .call(
            Method::PUT,
            &state_path,
            Some(&m.token),
            Some(json!({ "hash": "xyz" })),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_hash"))
    );
    let (st, _) = s
        .call(
            Method::PUT,
            &state_path,
            Some(&m.token),
            Some(json!({ "hash": "00".repeat(32), "packages": [{ "name": 1 }] })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .call(
            Method::PUT,
            &state_path,
            Some(&m.token),
            Some(json!({ "hash": "00".repeat(32), "packages": "nope" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // Unknown and malformed ids, unknown routes, wrong methods.
    for path in [
        "/api/pools/nope",
        "/api/pools/7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "/api/endpoints/%27%3B%20DROP",
        "/api/operations/7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "/api/nothing",
        "/nothing",
    ] {
        let (st, v) = s.get(path, &admin).await;
        assert_eq!(
            (st, code(&v).as_deref()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    let (st, v) = s
        .call(Method::PUT, "/api/pools", Some(&admin), Some(json!({})))
        .await;
    assert_eq!(
        (st, code(&v).as_deref()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (st, _) = s
        .post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": "nope" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // Query strings.
    for q in [
        "per_page=0",
        "page=0",
        "per_page=abc",
        "per_page=100000",
        "bogus=1",
        "page=9223372036854775807",
    ] {
        let (st, v) = s.get(&format!("/api/endpoints?{q}"), &admin).await;
        assert_eq!(
            (st, code(&v).as_deref()),
            (StatusCode::BAD_REQUEST, Some("invalid_query")),
            "{q}"
        );
    }
    let (st, _) = s.get("/api/endpoints?status=sideways", &admin).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .get(
            &format!("/api/endpoints/{}/plan?kind=sideways", m.id),
            &admin,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Names: SQL-looking and Unicode ones are just names; empty and
    // control characters are refused.
    for name in [
        "'; DROP TABLE pools; --",
        "Robert\"); DELETE FROM endpoints;",
        "プール 🚀",
        "ñandú",
    ] {
        let (st, v) = s.post("/api/pools", &admin, json!({ "name": name })).await;
        assert_eq!(st, StatusCode::CREATED, "{name}: {v}");
        assert_eq!(v["name"], name);
        let (st, v) = s
            .get(
                &format!("/api/pools/{}", v["id"].as_str().expect("id")),
                &admin,
            )
            .await;
        assert_eq!((st, v["name"].as_str()), (StatusCode::OK, Some(name)));
    }
    for name in ["", "   ", "a\u{0}b", "line\nbreak", &"x".repeat(201)] {
        let (st, v) = s.post("/api/pools", &admin, json!({ "name": name })).await;
        assert_eq!(
            (st, code(&v).as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")),
            "{name:?}"
        );
    }
    let (st, _) = s
        .post(
            "/api/pools",
            &admin,
            json!({ "name": "g", "offline_grace_secs": -1 }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .post(
            "/api/pools",
            &admin,
            json!({ "name": "g", "offline_grace_secs": 1e30 }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s.post("/api/pools", &admin, json!({})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // Operation progress out of range; login without fields.
    assert_eq!(
        s.report(&m, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", m.id),
            &m.token,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, op) = s
        .post(&format!("/api/endpoints/{}/sync", m.id), &admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let progress = format!(
        "/api/operations/{}/progress",
        op["id"].as_str().expect("id")
    );
    for body in [
        json!({ "status": "running", "progress": 500 }),
        json!({ "status": "exploded" }),
        json!({ "status": "running", "progress": "half" }),
    ] {
        let (st, v) = s.post(&progress, &m.token, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    let (st, _) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "username": "admin" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/endpoints/register",
            None,
            Some(json!({ "enrollment_token": "pse_x", "name": "n" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}
