//! The server on a PostgreSQL that takes TCP connections only over TLS,
//! its certificate checked (`sslmode=verify-full`): the pooled connections
//! (libpq) and the notification listener (rustls) both get through, and
//! notifications arrive.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestServer, state};
use crate::push::{connect, next};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_verifies_and_speaks_tls() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("cert");
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let Some(pg) = tokio::task::spawn_blocking({
        let (cert, key) = (cert.clone(), key.clone());
        move || crate::pg::start_with_tls(&cert, &key)
    })
    .await
    .expect("pg start") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write CA");
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        ca.to_str().expect("utf-8")
    );
    let s = TestServer::on_postgres(pg, &url).await;
    let admin = s.login("admin").await;
    let mut ws = connect(&s, &admin, false).await;
    let pool = s.create_pool(&admin, "p").await;
    let m = s.enroll(&admin, Some(&pool), "m").await;
    assert_eq!(
        s.report(&m, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", m.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Events reach sockets on PostgreSQL only through the listener.
    let status = next(&mut ws, "endpoint_status", Duration::from_secs(5)).await;
    assert_eq!(status["endpoint_id"], m.id.as_str(), "{status}");
    s.stop().await;
}
