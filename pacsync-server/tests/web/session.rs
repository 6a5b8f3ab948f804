//! The browser session over plain HTTP: cookie attributes, CSRF, roles,
//! logout (which ends the session on the server), and the page and its
//! assets.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::{Backend, PASSWORD, TestServer};

/// Logs in through `/ui/login`; the session cookie and the CSRF token.
pub async fn web_login(s: &TestServer, name: &str) -> (String, String) {
    let r = s
        .client
        .post(format!("{}/ui/login", s.base))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("login sent");
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["user"]["name"], name);
    assert!(
        body.get("access_token").is_none(),
        "the token stays in the cookie"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    (pair, body["csrf"].as_str().expect("csrf").to_owned())
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.base))
        .header(COOKIE, cookie);
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("sent");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn cookie_session_and_csrf(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let (cookie, csrf) = web_login(&s, "admin").await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (st, v) = call(&s, get.clone(), "/ui/session", &cookie, None, None).await;
    assert_eq!(
        (st, v["user"]["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    assert_eq!(v["csrf"], csrf.as_str());
    // Reads need no CSRF token.
    let (st, _) = call(&s, get.clone(), "/api/pools", &cookie, None, None).await;
    assert_eq!(st, StatusCode::OK);
    // Changes without it, or with a wrong one, are refused and change nothing.
    let pool = json!({ "name": "web" });
    for bad in [None, Some("0".repeat(64))] {
        let (st, v) = call(
            &s,
            post.clone(),
            "/api/pools",
            &cookie,
            bad.as_deref(),
            Some(pool.clone()),
        )
        .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("csrf_failed"))
        );
    }
    let (_, v) = call(&s, get.clone(), "/api/pools", &cookie, None, None).await;
    assert_eq!(v["total"], 0);
    let (st, v) = call(
        &s,
        post.clone(),
        "/api/pools",
        &cookie,
        Some(&csrf),
        Some(pool),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Another session's CSRF token does not fit this one.
    let (other_cookie, other_csrf) = web_login(&s, "operator").await;
    assert_ne!(other_csrf, csrf);
    let (st, _) = call(
        &s,
        post.clone(),
        "/api/pools",
        &other_cookie,
        Some(&csrf),
        Some(json!({ "name": "x" })),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Viewers and operators keep their roles: the API refuses them.
    let (vcookie, vcsrf) = web_login(&s, "viewer").await;
    let (st, v) = call(
        &s,
        post.clone(),
        "/api/pools",
        &vcookie,
        Some(&vcsrf),
        Some(json!({ "name": "v" })),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (st, _) = call(&s, get.clone(), "/ui/data/audit", &vcookie, None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(
        &s,
        get.clone(),
        "/ui/data/operations?status=queued",
        &vcookie,
        None,
        None,
    )
    .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(0)));
    let (st, v) = call(
        &s,
        get.clone(),
        "/ui/data/audit?action=pool",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["items"].as_array().is_some_and(|i| !i.is_empty()), "{v}");
    // Logging out needs the CSRF token too, and clears the cookie.
    let (st, _) = call(&s, post.clone(), "/ui/logout", &cookie, None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let r = s
        .client
        .post(format!("{}/ui/logout", s.base))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = r.headers()[SET_COOKIE].to_str().expect("ascii");
    assert!(
        cleared.starts_with("pacsync_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // The session ended on the server: the old cookie, replayed, is
    // refused, while the other sessions live on.
    let (st, _) = call(&s, get.clone(), "/api/pools", &cookie, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(&s, get.clone(), "/ui/session", &cookie, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(
        &s,
        post.clone(),
        "/api/pools",
        &cookie,
        Some(&csrf),
        Some(json!({ "name": "after" })),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(&s, get.clone(), "/api/pools", &vcookie, None, None).await;
    assert_eq!(st, StatusCode::OK);
    // No session: no answer.
    let (st, _) = call(
        &s,
        get,
        "/ui/session",
        "pacsync_session=nonsense",
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn page_and_assets(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let r = s
        .client
        .get(format!("{}/ui/", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = r.text().await.expect("html");
    assert!(html.contains("/ui/assets/js/app.js"));
    for (path, media) in [
        ("/ui/assets/js/app.js", "text/javascript"),
        ("/ui/assets/style.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CONTENT_TYPE], media, "{path}");
    }
    let r = s
        .client
        .get(format!("{}/ui/assets/../Cargo.toml", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

crate::on_both_backends!(cookie_session_and_csrf, page_and_assets);
