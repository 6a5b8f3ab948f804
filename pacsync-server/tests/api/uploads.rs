//! Full state reports: the packages are stored as the machine wrote them
//! (compressed) and read back as the same state, whatever the spacing,
//! the order of fields and packages, or repeated names.

use pacsync_core::package::Package;
use pacsync_core::state::PackageState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, TestServer, assert_error, expect_status};

crate::on_both_backends!(a_report_is_read_back_as_the_state_it_names);

/// 40 packages in reverse order, spaced out, fields shuffled, one escaped
/// character, a field no package has, and `pkg-07` twice (the later wins).
fn packages_text() -> String {
    let mut items = Vec::new();
    for i in (0..40).rev() {
        let depends = if i % 3 == 0 {
            format!(r#", "depends" : ["pkg-{:02}", "glibc"]"#, (i + 1) % 40)
        } else {
            String::new()
        };
        items.push(format!(
            r#"{{ "version": "1.{i}\u002d1", "name": "pkg-{i:02}", "reason": "{}",
                "origin": {{"repo": "extra", "kind": "repo"}}, "arch": "x86_64",
                "installed_size": {}, "note": "ignored"{depends} }}"#,
            if i % 2 == 0 { "explicit" } else { "dependency" },
            1000 + i
        ));
    }
    items.push(
        r#"{"name":"pkg-07","version":"9-9","arch":"any","reason":"explicit","installed_size":1}"#
            .to_owned(),
    );
    format!("[\n  {}\n]", items.join(",\n  "))
}

async fn put_raw(s: &TestServer, id: &str, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/api/endpoints/{id}/state", s.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, v)
}

async fn a_report_is_read_back_as_the_state_it_names(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;

    let text = packages_text();
    let sent: Vec<Package> = serde_json::from_str(&text).expect("the packages parse");
    let expected = PackageState::from(sent);
    assert_eq!(expected.len(), 40);
    assert_eq!(
        expected.get("pkg-07").map(|p| p.version.as_str()),
        Some("9-9")
    );
    let hash = expected.content_hash().to_string();
    let path = format!("/api/endpoints/{}/state", b.id);
    let body = |hash: &str, packages: &str| {
        format!("{{ \"packages\": {packages},\n \"hash\": \"{hash}\" }}").into_bytes()
    };

    // Refused reports store nothing.
    let (st, v) = put_raw(&s, &a.id, &a.token, body(&"00".repeat(32), &text)).await;
    assert_error((st, v), StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch");
    let broken = text.replacen("\"arch\": \"x86_64\"", "\"arch\": 5", 1);
    let (st, v) = put_raw(&s, &a.id, &a.token, body(&hash, &broken)).await;
    assert_error((st, v), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let mut not_utf8 = body(&hash, &text);
    let at = not_utf8.len() / 2;
    not_utf8[at] = 0xff;
    let (st, v) = put_raw(&s, &a.id, &a.token, not_utf8).await;
    assert_error((st, v), StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(
        s.call(
            Method::PUT,
            &path,
            Some(&b.token),
            Some(json!({ "hash": hash })),
        )
        .await,
        StatusCode::CONFLICT,
        "state_content_required",
    );

    let (st, v) = put_raw(&s, &a.id, &a.token, body(&hash, &text)).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // Another machine names it by its hash alone, and reads it back the
    // same as the one who sent it.
    expect_status(
        StatusCode::NO_CONTENT,
        s.call(
            Method::PUT,
            &path,
            Some(&b.token),
            Some(json!({ "hash": hash })),
        )
        .await,
    );
    for m in [&a, &b] {
        let v = expect_status(
            StatusCode::OK,
            s.get(&format!("/api/endpoints/{}/state", m.id), &admin)
                .await,
        );
        assert_eq!(v["hash"], hash);
        let back: Vec<Package> = serde_json::from_value(v["packages"].clone()).expect("packages");
        assert_eq!(PackageState::from(back), expected);
        assert_eq!(
            v["packages"],
            serde_json::to_value(&expected).expect("JSON"),
            "canonical in the answer"
        );
    }
    let ep = s.endpoint(&admin, &b.id).await;
    assert_eq!(ep["state_hash"], hash);
}
