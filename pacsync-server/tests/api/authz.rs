//! The authorization matrix: every protected route against no token,
//! broken tokens, each role, the machine itself and another machine.

use pacsync_server::auth::{Claims, Keys, Role};
use pacsync_server::settings::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, JWT_SECRET, TestServer, state};

crate::on_both_backends!(authorization_matrix);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Viewer,
    Admin,
    /// The machine itself or a user with this role.
    OwnOr(Role),
    /// Only the machine itself.
    Own,
    /// Any machine (acting on itself), no user.
    AnyMachine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Viewer,
    Operator,
    Admin,
    OwnMachine,
    OtherMachine,
}

fn allowed(rule: Rule, caller: Caller) -> bool {
    let role = match caller {
        Caller::Viewer => Some(Role::Viewer),
        Caller::Operator => Some(Role::Operator),
        Caller::Admin => Some(Role::Admin),
        _ => None,
    };
    match rule {
        Rule::Viewer => role >= Some(Role::Viewer),
        Rule::Admin => role >= Some(Role::Admin),
        Rule::OwnOr(r) => caller == Caller::OwnMachine || role >= Some(r),
        Rule::Own => caller == Caller::OwnMachine,
        Rule::AnyMachine => matches!(caller, Caller::OwnMachine | Caller::OtherMachine),
    }
}

fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let sig = parts.last_mut().expect("signature");
    let c = sig.chars().nth(5).expect("long signature");
    let replacement = if c == 'A' { "B" } else { "A" };
    sig.replace_range(5..6, replacement);
    parts.join(".")
}

async fn authorization_matrix(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    let viewer = s.login("viewer").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    let st_a = state(&[("x", "1-1")]);
    assert_eq!(s.report(&a, &st_a).await, StatusCode::NO_CONTENT);
    let (_, t1) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await;
    let t1 = t1["id"].as_str().expect("target").to_owned();
    let (_, op) = s
        .post(&format!("/api/endpoints/{}/sync", a.id), &admin, json!({}))
        .await;
    let op = op["id"].as_str().expect("op").to_owned();

    let (_, login) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "username": "admin", "password": crate::harness::PASSWORD })),
        )
        .await;
    let admin_id = login["user"]["id"].as_str().expect("id").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let now = i64::try_from(now).expect("time");
    let expired = Keys::new(&Secret::new(JWT_SECRET))
        .sign(&Claims {
            sub: admin_id.clone(),
            kind: "user".into(),
            role: Some(Role::Admin),
            generation: None,
            sid: None,
            iat: now - 7200,
            exp: now - 3600,
            iss: "pacsync-server".into(),
        })
        .expect("sign");
    let foreign = Keys::new(&Secret::new("another-secret-another-secret-0123456"))
        .issue_user(
            &admin_id,
            Role::Admin,
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            now,
        )
        .expect("sign");

    let (st, victim) = s
        .post(
            "/api/users",
            &admin,
            json!({ "name": "victim", "password": "long enough", "role": "operator" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{victim}");
    let victim = victim["id"].as_str().expect("user id").to_owned();
    // A user token of a session that does not exist.
    let sessionless = Keys::new(&Secret::new(JWT_SECRET))
        .issue_user(
            &admin_id,
            Role::Admin,
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            now,
        )
        .expect("sign");

    let missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let (ep, hash) = (a.id.clone(), st_a.content_hash().to_string());
    let routes: Vec<(Method, String, Option<Value>, Rule)> = vec![
        (Method::GET, "/api/pools".into(), None, Rule::Viewer),
        (
            Method::POST,
            "/api/pools".into(),
            Some(json!({ "name": "NAME" })),
            Rule::Admin,
        ),
        (
            Method::GET,
            format!("/api/pools/{pool}"),
            None,
            Rule::Viewer,
        ),
        (
            Method::PATCH,
            format!("/api/pools/{pool}"),
            Some(json!({ "description": "d" })),
            Rule::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/pools/{missing}"),
            None,
            Rule::Admin,
        ),
        (
            Method::GET,
            format!("/api/pools/{pool}/targets"),
            None,
            Rule::Viewer,
        ),
        (
            Method::GET,
            format!("/api/pools/{pool}/targets/{t1}"),
            None,
            Rule::Viewer,
        ),
        (
            Method::POST,
            format!("/api/pools/{pool}/rollback"),
            Some(json!({ "target_id": t1 })),
            Rule::Admin,
        ),
        (
            Method::GET,
            format!("/api/pools/{pool}/operations"),
            None,
            Rule::Viewer,
        ),
        (Method::GET, "/api/endpoints".into(), None, Rule::Viewer),
        (
            Method::GET,
            format!("/api/endpoints/{ep}"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::PATCH,
            format!("/api/endpoints/{ep}"),
            Some(json!({ "name": "a" })),
            Rule::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/endpoints/{missing}"),
            None,
            Rule::Admin,
        ),
        (
            Method::PUT,
            format!("/api/endpoints/{ep}/state"),
            Some(json!({ "hash": hash })),
            Rule::Own,
        ),
        (
            Method::GET,
            format!("/api/endpoints/{ep}/state"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::GET,
            format!("/api/endpoints/{ep}/states"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::GET,
            format!("/api/endpoints/{ep}/plan"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::GET,
            format!("/api/endpoints/{ep}/target"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::POST,
            format!("/api/endpoints/{ep}/set-latest"),
            Some(json!({})),
            Rule::OwnOr(Role::Operator),
        ),
        (
            Method::POST,
            format!("/api/endpoints/{ep}/sync"),
            Some(json!({})),
            Rule::OwnOr(Role::Operator),
        ),
        (
            Method::POST,
            format!("/api/endpoints/{ep}/revert"),
            Some(json!({})),
            Rule::OwnOr(Role::Operator),
        ),
        (
            Method::GET,
            format!("/api/endpoints/{ep}/operations"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::GET,
            format!("/api/operations/{op}"),
            None,
            Rule::OwnOr(Role::Viewer),
        ),
        (
            Method::POST,
            format!("/api/operations/{op}/progress"),
            Some(json!({ "status": "running" })),
            Rule::Own,
        ),
        (
            Method::POST,
            format!("/api/operations/{op}/cancel"),
            Some(json!({})),
            Rule::OwnOr(Role::Operator),
        ),
        (Method::GET, "/api/users".into(), None, Rule::Admin),
        (
            Method::POST,
            "/api/users".into(),
            Some(json!({ "name": "NAME", "password": "long enough", "role": "viewer" })),
            Rule::Admin,
        ),
        (
            Method::PATCH,
            format!("/api/users/{victim}"),
            Some(json!({ "role": "viewer" })),
            Rule::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/users/{missing}"),
            None,
            Rule::Admin,
        ),
        (
            Method::GET,
            "/api/enrollment-tokens".into(),
            None,
            Rule::Admin,
        ),
        (
            Method::POST,
            "/api/enrollment-tokens".into(),
            Some(json!({})),
            Rule::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/enrollment-tokens/{missing}"),
            None,
            Rule::Admin,
        ),
        (Method::GET, "/api/audit".into(), None, Rule::Admin),
        (
            Method::PUT,
            "/api/repositories".into(),
            Some(json!({ "repositories": [] })),
            Rule::AnyMachine,
        ),
        (Method::GET, "/api/repositories".into(), None, Rule::Viewer),
        (Method::GET, "/api/api-tokens".into(), None, Rule::Admin),
        (
            Method::POST,
            "/api/api-tokens".into(),
            Some(json!({ "name": "NAME", "role": "viewer" })),
            Rule::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/api-tokens/{missing}"),
            None,
            Rule::Admin,
        ),
        (
            Method::GET,
            format!("/api/repositories/analyze?pool={pool}"),
            None,
            Rule::Viewer,
        ),
    ];
    let callers = [
        (Caller::Viewer, viewer.clone()),
        (Caller::Operator, operator.clone()),
        (Caller::Admin, admin.clone()),
        (Caller::OwnMachine, a.token.clone()),
        (Caller::OtherMachine, b.token.clone()),
    ];
    let broken = [
        ("none", None),
        ("tampered", Some(tamper(&admin))),
        ("expired", Some(expired)),
        ("foreign key", Some(foreign)),
        ("no session", Some(sessionless)),
        ("garbage", Some("not.a.token".to_owned())),
    ];
    let mut checked = 0;
    for (method, path, body, rule) in &routes {
        for (label, token) in &broken {
            let (st, v) = s
                .call(method.clone(), path, token.as_deref(), body.clone())
                .await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {label} token: {v}"
            );
            checked += 1;
        }
        for (i, (caller, token)) in callers.iter().enumerate() {
            let body = body.clone().map(|b| {
                serde_json::from_str(&b.to_string().replace("NAME", &format!("n{i}-{checked}")))
                    .expect("json")
            });
            let (st, v) = s.call(method.clone(), path, Some(token), body).await;
            if allowed(*rule, *caller) {
                assert!(
                    st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
                    "{method} {path} as {caller:?} refused: {st} {v}"
                );
            } else {
                assert_eq!(
                    st,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {caller:?}: {v}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300);
    // A raw header without the Bearer scheme is no token at all.
    let resp = s
        .client
        .get(format!("{}/api/pools", s.base))
        .header("authorization", admin.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}
