//! The storage page in a real browser: the archive's totals and, per
//! pool, how much of its current target the archive holds; an admin
//! verifies every file and sees the damaged one at once; a viewer sees
//! the same figures and no actions.

use reqwest::StatusCode;
use serde_json::json;

use crate::browser::log_in;
use crate::harness::{Backend, TestServer, package, sha256, state};
use crate::webdriver::Browser;

crate::on_both_backends!(storage_page);

/// The text of cell `column` (1-based) of pool `pool`'s row.
fn cell(pool: &str, column: usize) -> String {
    format!(
        "document.querySelector('tr[data-pool=\"{pool}\"] td:nth-child({column})')?.textContent"
    )
}

async fn storage_page(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let archive_dir = archive.display().to_string();
    let Some(s) = TestServer::start_with(backend, &[("ARCHIVE_DIR", &archive_dir)]).await else {
        return;
    };
    let admin = s.login("admin").await;
    let lab = s.create_pool(&admin, "lab").await;
    s.create_pool(&admin, "spare").await;
    let a = s.enroll(&admin, Some(&lab), "a").await;
    let target = [("foo", "1.0-1"), ("bar", "2.0-1")];
    assert_eq!(s.report(&a, &state(&target)).await, StatusCode::NO_CONTENT);
    s.set_latest(&a).await;
    // foo is archived, bar is not.
    let foo_file = package("foo", "1.0-1", "foo one");
    let resp = s
        .client
        .put(format!("{}/api/archive/packages", s.base))
        .bearer_auth(&a.token)
        .body(foo_file.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);

    let Some(b) = Browser::start().await else {
        return;
    };
    log_in(&b, &s.base, "admin").await;
    b.goto(&format!("{}/ui/#/storage", s.base)).await;
    b.find("tr[data-pool=\"lab\"]").await;
    b.wait_for(
        "the archive's totals",
        "document.querySelector('#archive-files')?.textContent === '1'",
    )
    .await;
    // Pool, packages, archived, damaged, missing, size.
    let row = |pool: &str| {
        format!(
            "return [2, 3, 4, 5].map((c) => document.querySelector('tr[data-pool=\"{pool}\"] td:nth-child(' + c + ')').textContent);"
        )
    };
    assert_eq!(
        b.script(&row("lab"), json!([])).await,
        json!(["2", "1", "0", "1"])
    );
    assert_eq!(
        b.script(&format!("return {};", cell("spare", 2)), json!([]))
            .await,
        "no target"
    );
    assert_eq!(
        b.script(&format!("return {};", cell("lab", 6)), json!([]))
            .await,
        format!("{} B", foo_file.len()),
        "the size of the one archived file"
    );

    // The file is damaged on disk; verifying finds it and the page shows it.
    let sha = sha256(&foo_file);
    let object = archive.join("objects").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&object).expect("stored");
    bytes[10] ^= 1;
    std::fs::write(&object, bytes).expect("corrupt");
    b.click("#archive-verify").await;
    b.wait_for(
        "the damaged file",
        "document.querySelector('#archive-damaged')?.textContent === '1'",
    )
    .await;
    assert_eq!(
        b.script(&row("lab"), json!([])).await,
        json!(["2", "0", "1", "1"])
    );
    let report = b
        .wait_for(
            "the verification's report",
            "document.querySelector('#archive-report [role=alert]')?.textContent",
        )
        .await;
    assert!(
        report
            .as_str()
            .is_some_and(|r| r.contains("foo-1.0-1-x86_64.pkg.tar.zst")),
        "{report}"
    );
    b.script(
        "document.getElementById('toasts').replaceChildren();",
        json!([]),
    )
    .await;
    let suffix = if backend == Backend::Postgres {
        "-postgres"
    } else {
        ""
    };
    b.screenshot(&crate::browser::artifacts().join(format!("storage{suffix}.png")))
        .await;

    // A viewer: the same figures, no actions.
    b.click("#logout").await;
    log_in(&b, &s.base, "viewer").await;
    b.goto(&format!("{}/ui/#/storage", s.base)).await;
    b.find("tr[data-pool=\"lab\"]").await;
    assert_eq!(
        b.script(&row("lab"), json!([])).await,
        json!(["2", "0", "1", "1"])
    );
    for control in [
        "#archive-verify",
        "#archive-gc",
        "button[aria-label^=\"Fill\"]",
    ] {
        assert_eq!(b.count(control).await, 0, "a viewer is offered {control}");
    }
    s.stop().await;
}
