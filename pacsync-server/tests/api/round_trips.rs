//! What a state report costs in statements (each one a round trip to
//! PostgreSQL), counted on the connection, and that the statuses a report
//! writes with its state stay those a full recompute gives, also while
//! set-latest changes the target under the reports. On PostgreSQL, a
//! replica counts its own writes once (at commit, not again when their
//! notification comes back) and still hears its own events.

use std::sync::Arc;

use pacsync_core::state::PackageState;
use pacsync_server::store::changes::Touched;
use pacsync_server::store::endpoints::{self, Content};
use pacsync_server::store::{Store, checks_here, content, statements_here, status};
use reqwest::StatusCode;

use crate::harness::{Backend, TestServer, state};

crate::on_both_backends!(
    reports_take_few_statements,
    reports_racing_set_latest_keep_statuses_true
);

/// Statements of a changed report: `BEGIN`, the machine's row, the pool
/// with its target (and, on PostgreSQL, its lock and whether an operation
/// runs; SQLite asks that apart), the row written with its status, and
/// `COMMIT`. On SQLite, the content stored (an upload) or looked up (a
/// hash alone) and the state's history row are statements of their own;
/// on PostgreSQL a content that came with the report, the history row and
/// all notifications go in with the row's write, and only a hash alone
/// costs a lookup.
fn changed(backend: Backend, upload: bool) -> u64 {
    match backend {
        Backend::Postgres if upload => 5,
        Backend::Postgres => 6,
        Backend::Sqlite => 8,
    }
}
/// An unchanged report: `BEGIN`, the row read, the row's `last_seen_at`,
/// `COMMIT`.
const UNCHANGED: u64 = 4;

/// Runs one report on a thread of its own, as the handler's transaction
/// does (the content inserted first when `upload` has it), and returns
/// what it touched and how many statements it sent, besides the pool's
/// check of the connection if it made one (at most one: asserted).
async fn counted_report(store: &Store, id: &str, s: &PackageState, upload: bool) -> (Touched, u64) {
    let (store, id) = (store.clone(), id.to_owned());
    let state = Arc::new(s.clone());
    tokio::task::spawn_blocking(move || {
        let hash = state.content_hash().to_string();
        let prepared =
            upload.then(|| content::prepare_state(state, hash.clone()).expect("prepared"));
        let (before, checks) = (statements_here(), checks_here());
        let touched = store
            .write_blocking_touching(|c| {
                let known = match &prepared {
                    Some(p) => Content::New(p),
                    None => Content::Unchecked,
                };
                endpoints::report_state(c, &id, &hash, known).map(|t| (t, t))
            })
            .expect("report");
        let checks = checks_here() - checks;
        assert!(checks <= 1, "{checks} checks of a connection");
        (touched, statements_here() - before - checks)
    })
    .await
    .expect("report thread")
}

/// The handler's first try at a hash-only report ([`endpoints::touch_unchanged`]):
/// whether it was the machine's state, and the statements it took.
async fn counted_touch(store: &Store, id: &str, s: &PackageState) -> (bool, u64) {
    let (store, id, hash) = (store.clone(), id.to_owned(), s.content_hash().to_string());
    tokio::task::spawn_blocking(move || {
        let (before, checks) = (statements_here(), checks_here());
        let touched = store
            .write_statement_blocking(|c| endpoints::touch_unchanged(c, &id, &hash))
            .expect("touch");
        let checks = checks_here() - checks;
        (touched, statements_here() - before - checks)
    })
    .await
    .expect("touch thread")
}

async fn reports_take_few_statements(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let m = s.enroll(&admin, Some(&pool), "m").await;
    let target = state(&[("a", "1-1"), ("b", "1-1")]);
    assert_eq!(s.report(&m, &target).await, StatusCode::NO_CONTENT);
    s.set_latest(&m).await;
    let status_of = |v: serde_json::Value| v["status"].as_str().map(str::to_owned);

    // Warm-up: the target's content and the statements get cached.
    let behind = state(&[("a", "1-1")]);
    counted_report(&s.store, &m.id, &behind, true).await;
    counted_report(&s.store, &m.id, &target, false).await;
    assert_eq!(
        status_of(s.endpoint(&admin, &m.id).await).as_deref(),
        Some("in_sync")
    );

    // A new state uploaded with the report.
    let ahead = state(&[("a", "2-1"), ("b", "1-1")]);
    let (touched, n) = counted_report(&s.store, &m.id, &ahead, true).await;
    assert_eq!(touched, Touched::Listed);
    assert!(
        n <= changed(backend, true),
        "a changed upload took {n} statements"
    );
    let v = s.endpoint(&admin, &m.id).await;
    assert_eq!(status_of(v.clone()).as_deref(), Some("ahead"), "{v}");
    assert_eq!(v["state_hash"], ahead.content_hash().to_string(), "{v}");

    // A known state by its hash: its content is looked up.
    let (touched, n) = counted_report(&s.store, &m.id, &behind, false).await;
    assert_eq!(touched, Touched::Listed);
    assert!(
        n <= changed(backend, false),
        "a changed hash-only report took {n}"
    );
    assert_eq!(
        status_of(s.endpoint(&admin, &m.id).await).as_deref(),
        Some("behind")
    );

    // The same state again.
    let (touched, n) = counted_report(&s.store, &m.id, &behind, false).await;
    assert_eq!(touched, Touched::Nothing);
    assert!(n <= UNCHANGED, "an unchanged report took {n} statements");
    // The way the handler takes first: one statement, no transaction.
    assert_eq!(counted_touch(&s.store, &m.id, &behind).await, (true, 1));
    // Another state, or a machine gone offline, takes the transaction's.
    assert_eq!(counted_touch(&s.store, &m.id, &ahead).await, (false, 1));
    let id = m.id.clone();
    s.store
        .write(move |c| {
            use diesel::prelude::*;
            use pacsync_server::store::schema::endpoints as e;
            diesel::update(e::table.find(&id))
                .set(e::status.eq("offline"))
                .execute(c)?;
            Ok(())
        })
        .await
        .expect("offline");
    assert_eq!(counted_touch(&s.store, &m.id, &behind).await, (false, 1));
    assert_eq!(s.report(&m, &behind).await, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(s.endpoint(&admin, &m.id).await).as_deref(),
        Some("behind"),
        "back from offline"
    );

    // Each state change is in the history, the unchanged report is not.
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/states", m.id), &admin)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 5, "{v}");
    s.stop().await;
}

async fn reports_racing_set_latest_keep_statuses_true(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let mut machines = Vec::new();
    for i in 0..6 {
        machines.push(s.enroll(&admin, Some(&pool), &format!("m{i}")).await);
    }
    let states: Vec<PackageState> = (1..=3)
        .map(|v| state(&[("a", &format!("{v}-1")), ("b", "1-1")]))
        .collect();
    for m in &machines {
        assert_eq!(s.report(m, &states[0]).await, StatusCode::NO_CONTENT);
    }
    for round in 0..6 {
        let setter = &machines[round % machines.len()];
        let s = &s;
        let reports = machines.iter().enumerate().map(|(i, m)| {
            let st = &states[(round + i) % states.len()];
            async move { s.report(m, st).await }
        });
        let (codes, _) = tokio::join!(
            futures_util::future::join_all(reports),
            s.set_latest(setter)
        );
        assert!(
            codes.iter().all(|c| *c == StatusCode::NO_CONTENT),
            "{codes:?}"
        );
    }
    // What each report stored is what a recompute from scratch gives.
    for m in &machines {
        let stored = s.endpoint(&admin, &m.id).await["status"].clone();
        let id = m.id.clone();
        let fresh = s
            .store
            .write(move |c| status::recompute_endpoint(c, &id))
            .await
            .expect("recompute");
        assert_eq!(stored, fresh.as_str(), "{}", m.id);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_counts_its_own_writes_once() {
    let Some(one) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let two = one.replica().await.expect("a replica on the same database");
    let admin = one.login("admin").await;
    let pool = one.create_pool(&admin, "p").await;
    let m = one.enroll(&admin, Some(&pool), "m").await;
    assert_eq!(
        one.report(&m, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    let mut heard = [
        one.store.hub().subscribe_admin(),
        two.store.hub().subscribe_admin(),
    ];
    // Each listener hears the notifications of one transaction after those
    // committed before it (PostgreSQL delivers in commit order): once both
    // heard the status a target gave, they heard what set the target.
    one.set_latest(&m).await;
    for rx in &mut heard {
        next_status(rx, &m.id, "in_sync").await;
    }
    let (g1, g2) = (one.store.generations(), two.store.generations());
    let (c1, c2) = (g1.credentials(), g2.credentials());
    // A write that may change credentials, through one: counted there
    // before it answers.
    one.create_api_token(&admin, "t", "viewer").await;
    assert_eq!(g1.credentials(), c1 + 1);
    // A status change through two, heard after that write's notification:
    // by one although two made it, by two although it made it itself.
    assert_eq!(
        two.report(&m, &state(&[("x", "2-1")])).await,
        StatusCode::NO_CONTENT
    );
    for rx in &mut heard {
        next_status(rx, &m.id, "ahead").await;
    }
    // one skipped its own notification; two counted it.
    assert_eq!(g1.credentials(), c1 + 1);
    assert_eq!(g2.credentials(), c2 + 1);
    // A changed report that leaves the status as it was sends no event,
    // but still tells one that lists changed; then a status change, heard
    // by one after it.
    let listed = g1.listed();
    assert_eq!(
        two.report(&m, &state(&[("x", "3-1")])).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        two.report(&m, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    for rx in &mut heard {
        next_status(rx, &m.id, "in_sync").await;
    }
    assert!(
        g1.listed() >= listed + 2,
        "one heard {} changes of lists, not 2",
        g1.listed() - listed
    );
    two.stop().await;
    one.stop().await;
}

/// Waits for the event saying that machine `id` is now `status`.
async fn next_status(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<pacsync_server::events::Pushed>>,
    id: &str,
    status: &str,
) {
    loop {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event saying {id} is {status}"))
            .expect("the hub is open");
        if e.message["type"] == "endpoint_status"
            && e.message["endpoint_id"] == id
            && e.message["status"] == status
        {
            return;
        }
    }
}
