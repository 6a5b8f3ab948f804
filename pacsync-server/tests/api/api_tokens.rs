//! API tokens: made by admins (API or shell), scoped by role, revocable.

use pacsync_server::store::{Store, api_tokens};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Backend, JWT_SECRET, TestServer, assert_error, expect_status};

crate::on_both_backends!(api_tokens_act_with_their_role);

async fn api_tokens_act_with_their_role(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    expect_status(
        StatusCode::FORBIDDEN,
        s.post(
            "/api/api-tokens",
            &operator,
            json!({ "name": "ci", "role": "viewer" }),
        )
        .await,
    );
    let v = expect_status(
        StatusCode::CREATED,
        s.post(
            "/api/api-tokens",
            &admin,
            json!({ "name": "ci", "role": "operator" }),
        )
        .await,
    );
    let (ci_id, ci) = (
        v["id"].as_str().expect("id").to_owned(),
        v["token"].as_str().expect("token").to_owned(),
    );
    assert!(ci.starts_with("psa_"), "{ci}");
    assert!(v["expires_at"].is_null());
    assert_error(
        s.post(
            "/api/api-tokens",
            &admin,
            json!({ "name": "ci", "role": "viewer" }),
        )
        .await,
        StatusCode::CONFLICT,
        "name_taken",
    );
    expect_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        s.post(
            "/api/api-tokens",
            &admin,
            json!({ "name": "x", "role": "root" }),
        )
        .await,
    );

    // An operator token reads and triggers operations, but manages nothing.
    expect_status(StatusCode::OK, s.get("/api/pools", &ci).await);
    expect_status(
        StatusCode::FORBIDDEN,
        s.post("/api/pools", &ci, json!({ "name": "nope" })).await,
    );
    let pool = s.create_pool(&admin, "p").await;
    let m = s.enroll(&admin, Some(&pool), "m").await;
    let (st, v) = s
        .post(&format!("/api/endpoints/{}/sync", m.id), &ci, json!({}))
        .await;
    // Allowed (no 403); the machine just has no state to sync from.
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_target")),
        "{v}"
    );
    expect_status(
        StatusCode::FORBIDDEN,
        s.patch(
            &format!("/api/pools/{pool}"),
            &ci,
            json!({ "auto_sync": true }),
        )
        .await,
    );

    // Listed without the secret; last use recorded; the audit names it.
    let (st, v) = s.get("/api/api-tokens", &admin).await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(1)));
    assert!(!v.to_string().contains(&ci));
    assert!(v["items"][0]["last_used_at"].is_string(), "{v}");
    let v = expect_status(
        StatusCode::CREATED,
        s.post(
            "/api/api-tokens",
            &admin,
            json!({ "name": "short", "role": "admin", "expires_in": 60 }),
        )
        .await,
    );
    assert!(v["expires_at"].is_string());
    let (_, audit) = s.get("/api/audit?per_page=100", &admin).await;
    assert!(audit.to_string().contains("api_token.create"), "{audit}");

    // Revoked: refused at once; revoking twice is not found.
    let path = format!("/api/api-tokens/{ci_id}");
    assert_eq!(s.delete(&path, &admin).await, StatusCode::NO_CONTENT);
    expect_status(StatusCode::UNAUTHORIZED, s.get("/api/pools", &ci).await);
    assert_eq!(s.delete(&path, &admin).await, StatusCode::NOT_FOUND);
    expect_status(
        StatusCode::UNAUTHORIZED,
        s.get("/api/pools", "psa_0000").await,
    );
    s.stop().await;
}

#[test]
fn shell_makes_api_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pacsync-server"))
        .args([
            "admin",
            "api-token",
            "backup-bot",
            "--role",
            "operator",
            "--expires",
            "30d",
        ])
        .env("PACSYNC_DATA_DIR", dir.path())
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .output()
        .expect("run pacsync-server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let token = token.trim().to_owned();
    assert!(token.starts_with("psa_"), "{token}");
    let settings = crate::harness::settings_for(dir.path(), &[]);
    let store = Store::open(&settings.database).expect("open");
    let mut conn = store.blocking_conn().expect("conn");
    let row = api_tokens::authenticate(&mut conn, &token)
        .expect("lookup")
        .expect("the token is live");
    assert_eq!(
        (row.name.as_str(), row.role.as_str()),
        ("backup-bot", "operator")
    );
    assert!(row.expires_at.is_some());
}
