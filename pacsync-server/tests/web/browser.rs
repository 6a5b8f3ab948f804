//! An admin, then a viewer, in a real browser: log in, create a pool,
//! drag a machine into it, watch statuses change live as machines report,
//! compare targets, open the analysis matrix, trigger a sync and watch its
//! progress, and find that a viewer can change nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pacsync_core::analysis::RepoIndex;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, Machine, PASSWORD, TestServer, state};
use crate::webdriver::Browser;

pub fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("artifacts/web")
}

async fn shot(b: &Browser, backend: Backend, name: &str) {
    let suffix = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "-postgres",
    };
    // Notices of earlier steps would cover the page.
    b.script(
        "document.getElementById('toasts').replaceChildren();",
        json!([]),
    )
    .await;
    b.screenshot(&artifacts().join(format!("{name}{suffix}.png")))
        .await;
}

async fn report_repos(s: &TestServer, m: &Machine, pkgs: &[(&str, &str)]) {
    let index = RepoIndex {
        name: "core".into(),
        packages: pkgs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).into()))
            .collect::<BTreeMap<_, _>>(),
    };
    let hash = index.content_hash();
    let body =
        json!({ "repositories": [{ "name": "core", "hash": hash, "packages": index.packages }] });
    let (st, v) = s
        .call(Method::PUT, "/api/repositories", Some(&m.token), Some(body))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}

pub async fn log_in(b: &Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/ui/")).await;
    b.type_into("#username", name).await;
    b.type_into("#password", PASSWORD).await;
    b.click("#login").await;
    b.find("#pools").await;
}

/// A status badge of the machine's dashboard row.
fn row_status(name: &str) -> String {
    format!("document.querySelector('tr[data-name=\"{name}\"] td.status .badge')?.dataset.status")
}

async fn admin_and_viewer(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let ws1 = s.enroll(&admin, None, "ws-01").await;
    let ws2 = s.enroll(&admin, None, "ws-02").await;
    let base_state = [("bash", "5.2-1"), ("coreutils", "9.4-1"), ("nano", "7.2-1")];
    assert_eq!(
        s.report(&ws1, &state(&base_state)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.report(&ws2, &state(&base_state)).await,
        StatusCode::NO_CONTENT
    );

    let Some(b) = Browser::start().await else {
        return;
    };
    b.goto(&format!("{}/ui/", s.base)).await;
    b.find("#username").await;
    shot(&b, backend, "login").await;
    eprintln!("step: A wrong password is refused on the page.");
    // A wrong password is refused on the page.
    b.type_into("#username", "admin").await;
    b.type_into("#password", "wrong password").await;
    b.click("#login").await;
    b.wait_for(
        "the login error",
        "document.querySelector('#login-error').textContent",
    )
    .await;
    log_in(&b, &s.base, "admin").await;
    b.wait_for("the live channel", "document.body.dataset.live === 'on'")
        .await;

    eprintln!("step: Create a pool from the dashboard.");
    // Create a pool from the dashboard.
    b.type_into("#new-pool-name", "lab").await;
    b.click("#create-pool button[type=submit]").await;
    let card = b.find("article[aria-label=\"Pool lab\"]").await;
    let (_, pools) = s.get("/api/pools", &admin).await;
    assert_eq!(pools["items"][0]["name"], "lab", "{pools}");
    let pool_id = pools["items"][0]["id"]
        .as_str()
        .expect("pool id")
        .to_owned();

    eprintln!("step: Drag ws-01 onto it with the mouse.");
    // Drag ws-01 onto it with the mouse.
    let handle = b.find("tr[data-name=\"ws-01\"] .handle").await;
    b.drag(&handle, &card).await;
    b.wait_for(
        "ws-01 shown in lab",
        "document.querySelector('tr[data-name=\"ws-01\"] td.pool').textContent === 'lab'",
    )
    .await;
    assert_eq!(
        s.endpoint(&admin, &ws1.id).await["pool_id"],
        pool_id.as_str()
    );
    eprintln!("step: And ws-02 with the keyboard alternative: its row's select and button.");
    // And ws-02 with the keyboard alternative: its row's select and button.
    b.click("select[aria-label=\"Pool for ws-02\"] option:nth-child(2)")
        .await;
    b.click("tr[data-name=\"ws-02\"] button").await;
    b.wait_for(
        "ws-02 shown in lab",
        "document.querySelector('tr[data-name=\"ws-02\"] td.pool').textContent === 'lab'",
    )
    .await;
    assert_eq!(
        s.endpoint(&admin, &ws2.id).await["pool_id"],
        pool_id.as_str()
    );
    b.wait_for(
        "no target yet",
        &format!("{} === 'no_target'", row_status("ws-01")),
    )
    .await;

    eprintln!("step: Statuses follow the machines live, without reloading the page.");
    // Statuses follow the machines live, without reloading the page.
    b.script("window.pacsyncStay = 1;", json!([])).await;
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", ws1.id),
            &ws1.token,
            json!({ "comment": "first" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    b.wait_for(
        "ws-01 in sync",
        &format!("{} === 'in_sync'", row_status("ws-01")),
    )
    .await;
    let mut ahead = base_state.to_vec();
    ahead.push(("vim", "9.1-1"));
    assert_eq!(s.report(&ws1, &state(&ahead)).await, StatusCode::NO_CONTENT);
    b.wait_for(
        "ws-01 ahead",
        &format!("{} === 'ahead'", row_status("ws-01")),
    )
    .await;
    b.wait_for(
        "the pool card counting one machine ahead",
        "document.querySelector('article[aria-label=\"Pool lab\"] [data-count=\"ahead\"]')",
    )
    .await;
    assert_eq!(
        b.script("return window.pacsyncStay;", json!([])).await,
        1,
        "the page reloaded"
    );
    report_repos(
        &s,
        &ws1,
        &[
            ("bash", "5.2-1"),
            ("coreutils", "9.4-1"),
            ("nano", "7.2-1"),
            ("vim", "9.1-1"),
        ],
    )
    .await;
    report_repos(&s, &ws2, &[("bash", "5.2-1"), ("coreutils", "9.4-1")]).await;
    shot(&b, backend, "dashboard").await;

    eprintln!("step: ws-01's state becomes the new target from its page.");
    // ws-01's state becomes the new target from its page.
    b.goto(&format!("{}/ui/#/machines/{}", s.base, ws1.id))
        .await;
    b.find("#set-latest").await;
    b.click("#set-latest").await;
    b.accept_prompt("with vim").await;
    b.wait_for(
        "ws-01 in sync",
        "document.querySelector('#machine-status .badge')?.dataset.status === 'in_sync'",
    )
    .await;
    let (_, targets) = s
        .get(&format!("/api/pools/{pool_id}/targets"), &admin)
        .await;
    assert_eq!(targets["items"][0]["comment"], "with vim", "{targets}");

    eprintln!("step: The pool page: members, history and the diff of the two targets.");
    // The pool page: members, history and the diff of the two targets.
    b.goto(&format!("{}/ui/#/pools/{pool_id}", s.base)).await;
    b.find("#diff-form button[type=submit]").await;
    // The members' list may come after the history.
    b.wait_for(
        "both members",
        "document.querySelectorAll('#members tr[data-machine]').length === 2",
    )
    .await;
    assert_eq!(b.count("#targets tr[data-target]").await, 2);
    b.click("#diff-form button[type=submit]").await;
    b.wait_for(
        "the diff",
        "document.querySelector('#diff td.added')?.parentElement.textContent.includes('vim')",
    )
    .await;
    shot(&b, backend, "pool").await;

    eprintln!("step: The analysis matrix: nano is missing from ws-02's repositories.");
    // The analysis matrix: nano is missing from ws-02's repositories.
    b.click("#open-analysis").await;
    b.find("#matrix-table tr[data-package=\"nano\"]").await;
    let reason = b
        .wait_for("nano excluded", "document.querySelector('tr[data-package=\"nano\"]').textContent.includes('not in every repository')")
        .await;
    assert_eq!(reason, true);
    assert_eq!(b.count("#matrix-table tbody tr").await, 4);
    b.click("button[aria-label=\"Include nano\"]").await;
    b.wait_for("nano included by hand", "document.querySelector('tr[data-package=\"nano\"]')?.textContent.includes('included by hand')")
        .await;
    let (_, pool) = s.get(&format!("/api/pools/{pool_id}"), &admin).await;
    assert_eq!(
        pool["repository_overrides"]["include"],
        json!(["nano"]),
        "{pool}"
    );
    shot(&b, backend, "analysis").await;
    b.type_into("#package-filter", "co").await;
    b.wait_for(
        "the filter",
        "document.querySelectorAll('#matrix-table tbody tr').length === 1",
    )
    .await;

    eprintln!("step: Trigger a sync of ws-02 and watch its progress live.");
    // Trigger a sync of ws-02 and watch its progress live.
    let older = [("bash", "5.1-1"), ("coreutils", "9.4-1"), ("nano", "7.2-1")];
    assert_eq!(s.report(&ws2, &state(&older)).await, StatusCode::NO_CONTENT);
    b.goto(&format!("{}/ui/#/machines/{}", s.base, ws2.id))
        .await;
    b.wait_for(
        "ws-02 behind",
        "document.querySelector('#machine-status .badge')?.dataset.status === 'behind'",
    )
    .await;
    b.click("#sync").await;
    b.wait_for(
        "the queued sync",
        "document.querySelector('#operations tr[data-operation]')?.textContent.includes('queued')",
    )
    .await;
    let (_, ops) = s
        .get(
            &format!("/api/endpoints/{}/operations?status=queued", ws2.id),
            &admin,
        )
        .await;
    assert_eq!(ops["total"], 1, "{ops}");
    assert_eq!(ops["items"][0]["requested_by"], "user:admin");
    let op = ops["items"][0]["id"].as_str().expect("op id").to_owned();
    let (st, v) = s
        .post(
            &format!("/api/operations/{op}/progress"),
            &ws2.token,
            json!({ "status": "running", "progress": 40, "message": "downloading" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    b.wait_for(
        "progress 40%",
        "document.querySelector('#operations tr[data-operation]')?.textContent.includes('40%')",
    )
    .await;
    b.wait_for(
        "syncing",
        "document.querySelector('#machine-status .badge')?.dataset.status === 'syncing'",
    )
    .await;
    shot(&b, backend, "machine").await;

    eprintln!("step: The logs and the access page.");
    // The logs and the access page.
    b.goto(&format!("{}/ui/#/operations", s.base)).await;
    b.wait_for(
        "the operations log",
        "document.querySelector('#log')?.textContent.includes('downloading')",
    )
    .await;
    shot(&b, backend, "operations").await;
    b.goto(&format!("{}/ui/#/audit", s.base)).await;
    b.find("#audit-action").await;
    b.type_into("#audit-action", "rollback").await;
    b.wait_for(
        "no rollback yet",
        "document.querySelector('#log')?.textContent.includes('Nothing matches')",
    )
    .await;
    b.type_into("#audit-action", "pool").await;
    b.wait_for("pool entries", "document.querySelector('#log tbody tr')")
        .await;
    shot(&b, backend, "audit").await;
    b.goto(&format!("{}/ui/#/access", s.base)).await;
    b.type_into("#api-token-name", "ci").await;
    b.click("#api-token-form button[type=submit]").await;
    let secret = b
        .wait_for(
            "the new token",
            "document.querySelector('[data-secret] ')?.textContent",
        )
        .await;
    let secret = secret.as_str().expect("token text").to_owned();
    assert!(secret.starts_with("psa_"), "{secret}");
    let (st, _) = s.get("/api/pools", &secret).await;
    assert_eq!(st, StatusCode::OK, "the token shown works");
    shot(&b, backend, "access").await;

    eprintln!("step: Users: add one, change its role, reset its password, delete it.");
    b.type_into("#user-name", "temp").await;
    b.type_into("#user-password", PASSWORD).await;
    b.click("#user-form button[type=submit]").await;
    b.find("tr[data-user=\"temp\"]").await;
    b.click("select[aria-label=\"Role of temp\"] option[value=operator]")
        .await;
    b.click("button[aria-label=\"Change the role of temp\"]")
        .await;
    b.wait_for(
        "temp an operator",
        "document.querySelector('select[aria-label=\"Role of temp\"]')?.value === 'operator' && document.querySelector('#toasts').textContent.includes('temp is now operator')",
    )
    .await;
    let temp = s.login("temp").await;
    assert_eq!(s.get("/api/pools", &temp).await.0, StatusCode::OK);
    b.type_into(
        "input[aria-label=\"New password for temp\"]",
        "another password",
    )
    .await;
    b.click("form[data-reset-user=\"temp\"] button").await;
    b.wait_for(
        "the reset",
        "document.querySelector('#toasts').textContent.includes('Password of temp reset')",
    )
    .await;
    assert_eq!(
        s.get("/api/pools", &temp).await.0,
        StatusCode::UNAUTHORIZED,
        "a reset ends the user's sessions"
    );
    // The only admin's own row: demoting it is refused with the reason.
    b.click("select[aria-label=\"Role of admin\"] option[value=viewer]")
        .await;
    b.click("button[aria-label=\"Change the role of admin\"]")
        .await;
    b.wait_for(
        "the last admin kept",
        "document.querySelector('#toasts').textContent.includes('last admin')",
    )
    .await;
    b.click("button[aria-label=\"Delete user temp\"]").await;
    b.accept_dialog().await;
    b.wait_for(
        "temp gone",
        "!document.querySelector('tr[data-user=\"temp\"]') && document.querySelector('tr[data-user=\"admin\"]')",
    )
    .await;
    let (_, users) = s.get("/api/users", &admin).await;
    assert_eq!(users["total"], 3, "{users}");
    let (_, who) = s.get("/api/users", &admin).await;
    assert!(
        who["items"].as_array().is_some_and(|u| u
            .iter()
            .any(|u| u["name"] == "admin" && u["role"] == "admin")),
        "{who}"
    );

    eprintln!("step: Dark theme.");
    // Dark theme.
    b.goto(&format!("{}/ui/#/", s.base)).await;
    b.find("#pools article").await;
    while b
        .script(
            "return document.documentElement.dataset.theme || '';",
            json!([]),
        )
        .await
        != "dark"
    {
        b.click("#theme").await;
    }
    shot(&b, backend, "dashboard-dark").await;
    b.click("#theme").await;

    eprintln!("step: Logging out ends the session: the old cookie, put back, is refused.");
    let old_cookie = b.cookie("pacsync_session").await;
    assert!(
        old_cookie["value"].as_str().is_some_and(|v| !v.is_empty()),
        "{old_cookie}"
    );
    b.click("#logout").await;
    b.find("#username").await;
    b.add_cookie(json!({
        "name": "pacsync_session",
        "value": old_cookie["value"],
        "path": "/",
        "httpOnly": true,
        "sameSite": "Strict",
    }))
    .await;
    b.goto(&format!("{}/ui/#/access", s.base)).await;
    b.find("#username").await;
    assert_eq!(
        b.script(
            "return document.querySelector('header.top').hidden && !document.querySelector('#users');",
            json!([])
        )
        .await,
        true,
        "the replayed cookie opened a page"
    );
    let replayed = b
        .script_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/api/pools').then((r) => done(r.status));",
            json!([]),
        )
        .await;
    assert_eq!(replayed, 401);

    eprintln!("step: A viewer sees everything and can change nothing.");
    // A viewer sees everything and can change nothing.
    log_in(&b, &s.base, "viewer").await;
    b.find("tr[data-name=\"ws-01\"]").await;
    for control in [
        "#create-pool",
        ".handle",
        "select[aria-label^=\"Pool for\"]",
        "a[data-nav=\"access\"]:not([hidden])",
    ] {
        let visible = b
            .script(&format!("const e = document.querySelector('{control}'); return !!e && e.offsetParent !== null;"), json!([]))
            .await;
        assert_eq!(visible, false, "a viewer sees {control}");
    }
    b.goto(&format!("{}/ui/#/machines/{}", s.base, ws1.id))
        .await;
    b.find("#machine-status .badge").await;
    assert_eq!(b.count("#sync, #revert, #set-latest, #remove").await, 0);
    b.goto(&format!("{}/ui/#/pools/{pool_id}", s.base)).await;
    b.find("#policy-form").await;
    assert_eq!(
        b.script(
            "return document.querySelector('#policy-form fieldset').disabled;",
            json!([])
        )
        .await,
        true
    );
    assert_eq!(
        b.count("#policy-form button, #targets button:not([type=submit]), #add-member-form")
            .await,
        0
    );
    shot(&b, backend, "pool-viewer").await;
    b.goto(&format!("{}/ui/#/access", s.base)).await;
    b.wait_for(
        "the refusal",
        "document.querySelector('#main [role=alert]')?.textContent.includes('admin')",
    )
    .await;
    assert_eq!(
        b.count("#users, form[data-reset-user], button[aria-label^=\"Delete user\"]")
            .await,
        0
    );
    eprintln!("step: The API refuses the viewer's session even with its CSRF token.");
    // The API refuses the viewer's session even with its CSRF token.
    let refused = b
        .script_async(
            "const done = arguments[arguments.length - 1];\
             (async () => {\
               const s = await (await fetch('/ui/session')).json();\
               const post = (p, body) => fetch(p, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: JSON.stringify(body) }).then((r) => r.status);\
               const patch = await fetch('/api/pools/' + arguments[0], { method: 'PATCH', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: '{\"keep_extras\":true}' }).then((r) => r.status);\
               done([s.user.role, await post('/api/pools', { name: 'x' }), await post('/api/endpoints/' + arguments[1] + '/sync', {}), patch]);\
             })();",
            json!([pool_id, ws1.id]),
        )
        .await;
    assert_eq!(refused, json!(["viewer", 403, 403, 403]));
    let (_, pool) = s.get(&format!("/api/pools/{pool_id}"), &admin).await;
    assert_eq!(pool["keep_extras"], false);
    drop(b);
    s.stop().await;
}

crate::on_both_backends!(admin_and_viewer);
