//! Health, metrics, TLS and shutdown.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{Backend, TestServer, settings_for};

crate::on_both_backends!(health_and_metrics);

async fn health_and_metrics(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let (st, v) = s.call(Method::GET, "/health/live", None, None).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, v) = s.call(Method::GET, "/health/ready", None, None).await;
    let kind = if backend == Backend::Sqlite {
        "internal"
    } else {
        "postgresql"
    };
    assert_eq!((st, v["database"].as_str()), (StatusCode::OK, Some(kind)));
    let admin = s.login("admin").await;
    s.enroll(&admin, None, "m").await;
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            "pacsync_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("route=\"/api/endpoints/register\",status=\"201\""),
        "{text}"
    );
    assert!(
        text.contains("pacsync_endpoints{status=\"unassigned\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pacsync_endpoints{status=\"in_sync\"} 0"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let s = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let base = s.base.clone();
    let (st, _) = s.call(Method::GET, "/health/live", None, None).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_the_error_body() {
    let s = TestServer::start_with(Backend::Sqlite, &[("API_RATE_LIMIT", "5")])
        .await
        .expect("sqlite");
    let mut codes = Vec::new();
    for _ in 0..8 {
        let (st, _) = s.call(Method::GET, "/api/pools", None, None).await;
        codes.push(st);
    }
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == StatusCode::UNAUTHORIZED)
            .count(),
        5,
        "{codes:?}"
    );
    assert_eq!(codes.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    // Probes are never limited.
    let (st, _) = s.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn serves_tls_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
    let settings = settings_for(
        dir.path(),
        &[
            ("TLS_CERT_FILE", cert_path.to_str().expect("utf-8")),
            ("TLS_KEY_FILE", key_path.to_str().expect("utf-8")),
        ],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pacsync_server::launch(settings, listener, async {
        let _ = rx.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ck.cert.der().clone())
        .expect("trust the test cert");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"ok\""), "{response}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/health/live"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != StatusCode::OK));

    tx.send(()).expect("server running");
    server.await.expect("task").expect("clean exit");
}
