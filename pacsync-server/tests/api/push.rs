//! The WebSocket push channel: what machines and admin clients hear, how
//! they authenticate, and notifications crossing replicas on PostgreSQL.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::harness::{Backend, TestServer, state};

crate::on_both_backends!(
    machines_and_admins_hear_changes,
    a_pool_larger_than_one_step_follows_its_new_target
);

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with the token in the header (`query: false`) or the query.
pub(crate) async fn connect(s: &TestServer, token: &str, query: bool) -> Socket {
    let ws = s.base.replacen("http", "ws", 1);
    let mut req = if query {
        format!("{ws}/api/ws?access_token={token}")
    } else {
        format!("{ws}/api/ws")
    }
    .into_client_request()
    .expect("request");
    if !query {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    let hello = next(&mut socket, "hello", Duration::from_secs(2)).await;
    assert!(hello.is_object(), "{hello}");
    socket
}

/// The next message of type `kind` within `within`, skipping others.
pub(crate) async fn next(socket: &mut Socket, kind: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within {within:?}"))
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON message");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// Nothing of type `kind` arrives within `within`.
async fn silent(socket: &mut Socket, kind: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            assert_ne!(v["type"], kind, "unexpected {v}");
        }
    }
}

async fn machines_and_admins_hear_changes(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let viewer = s.login("viewer").await;
    let pool = s.create_pool(&admin, "p").await;
    let other_pool = s.create_pool(&admin, "q").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    let c = s.enroll(&admin, Some(&other_pool), "c").await;
    assert_eq!(
        s.report(&a, &state(&[("x", "2-1")])).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.report(&b, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );

    let mut ws_b = connect(&s, &b.token, false).await;
    let mut ws_c = connect(&s, &c.token, false).await;
    // Browsers put the token in the query.
    let mut ws_admin = connect(&s, &viewer, true).await;

    // Another machine sets the target: b hears it within a second.
    let (st, t) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &a.token,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let m = next(&mut ws_b, "target_changed", Duration::from_secs(1)).await;
    assert_eq!(
        (&m["pool_id"], &m["target"]["id"]),
        (&json!(pool), &t["id"])
    );
    // The admin client sees b fall behind.
    loop {
        let m = next(&mut ws_admin, "endpoint_status", Duration::from_secs(1)).await;
        if m["endpoint_id"] == b.id.as_str() {
            assert_eq!(
                (m["status"].as_str(), m["previous"].as_str()),
                (Some("behind"), Some("no_target"))
            );
            break;
        }
    }
    // Machines listen on a channel of their own: no machine hears the
    // status changes meant for admin clients.
    silent(&mut ws_b, "endpoint_status", Duration::from_millis(200)).await;

    // An admin asks for a sync of b: b hears it, the admin client sees it.
    let (st, op) = s
        .post(&format!("/api/endpoints/{}/sync", b.id), &admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{op}");
    let m = next(&mut ws_b, "operation_requested", Duration::from_secs(1)).await;
    assert_eq!(m["operation"]["id"], op["id"]);
    // (The admin client heard of a's set-latest operation before.)
    let m = loop {
        let m = next(&mut ws_admin, "operation_progress", Duration::from_secs(1)).await;
        if m["operation"]["id"] == op["id"] {
            break m;
        }
    };
    assert_eq!(m["operation"]["status"], "queued");
    let (st, _) = s
        .post(
            &format!(
                "/api/operations/{}/progress",
                op["id"].as_str().expect("id")
            ),
            &b.token,
            json!({ "status": "running", "progress": 30 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let m = next(&mut ws_admin, "operation_progress", Duration::from_secs(1)).await;
    assert_eq!(
        (
            m["operation"]["progress"].as_i64(),
            m["operation"]["status"].as_str()
        ),
        (Some(30), Some("running"))
    );

    // A policy change reaches the pool's machines.
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            Some(json!({ "exclusions": ["linux*"] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let m = next(&mut ws_b, "policy_changed", Duration::from_secs(1)).await;
    assert_eq!(m["pool_id"], pool.as_str());

    // c, in another pool, heard none of it; moved into the pool, it
    // hears that its target changed, and then the pool's changes.
    silent(&mut ws_c, "target_changed", Duration::from_millis(200)).await;
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("/api/endpoints/{}", c.id),
            Some(&admin),
            Some(json!({ "pool_id": pool })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let m = next(&mut ws_c, "target_changed", Duration::from_secs(1)).await;
    assert_eq!(m["pool_id"], pool.as_str());
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            Some(json!({ "keep_extras": true })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    next(&mut ws_c, "policy_changed", Duration::from_secs(1)).await;

    // The socket answers pings (tungstenite replies on read) and the
    // client may ping the server.
    ws_b.send(Message::Ping(vec![1, 2].into()))
        .await
        .expect("ping");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, ws_b.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(&p[..], &[1, 2]);
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong: {other:?}"),
        }
    }

    // Shutdown closes sessions with "going away".
    s.stop().await;
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(m) = ws_admin.next().await {
            if let Ok(Message::Close(f)) = m {
                return f.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed after shutdown");
    assert_eq!(closed, Some(1001));
}

/// More members than one write step recomputes (500): the machines hear of
/// the target, and by the time set-latest answers every member's status
/// follows it.
async fn a_pool_larger_than_one_step_follows_its_new_target(backend: Backend) {
    const MEMBERS: usize = 520;
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "big").await;
    let source = s.enroll(&admin, Some(&pool), "source").await;
    assert_eq!(
        s.report(&source, &state(&[("x", "2-1")])).await,
        StatusCode::NO_CONTENT
    );
    let old = state(&[("x", "1-1")]);
    let members: Vec<_> = futures_util::stream::iter(0..MEMBERS)
        .map(|i| {
            let (s, admin, pool, old) = (&s, &admin, &pool, &old);
            async move {
                let m = s.enroll(admin, Some(pool), &format!("m{i:03}")).await;
                assert_eq!(s.report(&m, old).await, StatusCode::NO_CONTENT);
                m
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut ws = connect(&s, &members[MEMBERS - 1].token, false).await;
    let count = |status: &'static str| {
        let (s, admin, pool) = (&s, &admin, &pool);
        async move {
            let (st, v) = s
                .get(
                    &format!("/api/endpoints?pool_id={pool}&status={status}&per_page=1"),
                    admin,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["total"].as_u64().expect("total")
        }
    };
    assert_eq!(count("no_target").await, MEMBERS as u64 + 1);

    let (st, t) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", source.id),
            &source.token,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let m = next(&mut ws, "target_changed", Duration::from_secs(5)).await;
    assert_eq!(m["target"]["id"], t["id"]);
    assert_eq!(
        (count("behind").await, count("in_sync").await),
        (MEMBERS as u64, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_needs_a_valid_token() {
    let s = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let ws = s.base.replacen("http", "ws", 1);
    for url in [
        format!("{ws}/api/ws"),
        format!("{ws}/api/ws?access_token=not.a.token"),
    ] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            }
            other => panic!("{url}: expected 401, got {other:?}"),
        }
    }
    // A plain GET with a good token is told to upgrade.
    let admin = s.login("admin").await;
    let (st, v) = s.get("/api/ws", &admin).await;
    assert!(st.is_client_error(), "{st} {v}");
    assert_eq!(v["error"]["code"], "websocket_required");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_replicas_on_postgres() {
    let Some(one) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let two = one.replica().await.expect("a replica on the same database");
    let admin = one.login("admin").await;
    let pool = one.create_pool(&admin, "p").await;
    let a = one.enroll(&admin, Some(&pool), "a").await;
    let b = one.enroll(&admin, Some(&pool), "b").await;
    assert_eq!(
        one.report(&a, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    // b listens on replica two; the target is set through replica one.
    let mut ws_b = connect(&two, &b.token, false).await;
    let admin_two = two.login("admin").await;
    let mut ws_admin = connect(&two, &admin_two, false).await;
    let (st, t) = one
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({ "comment": "via one" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let m = next(&mut ws_b, "target_changed", Duration::from_secs(1)).await;
    assert_eq!(m["target"]["comment"], "via one");
    next(&mut ws_admin, "endpoint_status", Duration::from_secs(1)).await;
    // Both serve the same data.
    let e1 = one.endpoint(&admin, &a.id).await;
    let e2 = two.endpoint(&admin_two, &a.id).await;
    assert_eq!(e1, e2);
    two.stop().await;
    one.stop().await;
}
