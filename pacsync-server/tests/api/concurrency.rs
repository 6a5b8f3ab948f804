//! Races the database must settle: set-latest against set-latest, sync
//! against sync, many machines reporting at once, and a cancel against a
//! report in flight.

use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use pacsync_server::store::endpoints::{self, Content};
use pacsync_server::store::operations::{self, Progress};
use pacsync_server::store::{DbConnection, Store, StoreError};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, Machine, TestServer, expect_status, state};

crate::on_both_backends!(racing_set_latest, racing_syncs, many_reports_at_once);

/// PostgreSQL only: SQLite has one writer at a time, so these
/// transactions cannot interleave there.
mod on_postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_against_a_report_in_flight() {
        super::cancel_against_a_report_in_flight().await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_against_the_end_in_flight() {
        super::cancel_against_the_end_in_flight().await;
    }
}

async fn racing_set_latest(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    assert_eq!(
        s.report(&a, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.report(&b, &state(&[("x", "2-1")])).await,
        StatusCode::NO_CONTENT
    );
    for round in 0..5 {
        let (_, pv) = s.get(&format!("/api/pools/{pool}"), &admin).await;
        let expected = pv["current_target_id"].clone();
        let body = json!({ "expected_target": expected, "comment": format!("round {round}") });
        let (pa, pb) = (
            format!("/api/endpoints/{}/set-latest", a.id),
            format!("/api/endpoints/{}/set-latest", b.id),
        );
        let (ra, rb) = tokio::join!(
            s.post(&pa, &a.token, body.clone()),
            s.post(&pb, &b.token, body.clone()),
        );
        let mut codes = [ra.0, rb.0];
        codes.sort();
        assert_eq!(
            codes,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{ra:?} {rb:?}"
        );
        let loser = if ra.0 == StatusCode::CONFLICT {
            &ra.1
        } else {
            &rb.1
        };
        assert_eq!(loser["error"]["code"], "target_conflict");
    }
    let (_, v) = s.get(&format!("/api/pools/{pool}/targets"), &admin).await;
    assert_eq!(v["total"], 5);
    let seqs: Vec<i64> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    s.stop().await;
}

async fn racing_syncs(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    assert_eq!(
        s.report(&a, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    let (st, _) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for _ in 0..5 {
        let path = format!("/api/endpoints/{}/sync", a.id);
        let (r1, r2) = tokio::join!(
            s.post(&path, &operator, json!({})),
            s.post(&path, &a.token, json!({}))
        );
        let mut codes = [r1.0, r2.0];
        codes.sort();
        assert_eq!(
            codes,
            [StatusCode::ACCEPTED, StatusCode::CONFLICT],
            "{r1:?} {r2:?}"
        );
        let (winner, loser) = if r1.0 == StatusCode::ACCEPTED {
            (&r1.1, &r2.1)
        } else {
            (&r2.1, &r1.1)
        };
        assert_eq!(loser["error"]["code"], "operation_in_progress");
        let (st, _) = s
            .post(
                &format!(
                    "/api/operations/{}/cancel",
                    winner["id"].as_str().expect("id")
                ),
                &operator,
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    s.stop().await;
}

async fn many_reports_at_once(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "fleet").await;
    let (st, v) = s
        .post("/api/enrollment-tokens", &admin, json!({ "pool": pool }))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let token = v["token"].as_str().expect("token").to_owned();
    let mut machines: Vec<Machine> = Vec::new();
    for i in 0..50 {
        let (st, v) = s
            .call(
                Method::POST,
                "/api/endpoints/register",
                None,
                Some(json!({ "enrollment_token": token, "name": format!("m{i}") })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        machines.push(Machine {
            id: v["endpoint"]["id"].as_str().expect("id").to_owned(),
            token: v["access_token"].as_str().expect("t").to_owned(),
            refresh: v["refresh_token"].as_str().expect("r").to_owned(),
        });
    }
    // Every machine reports a state of its own (new content) and then the
    // shared one, all at once: writers contend for the database.
    let shared = state(&[("bash", "5.2-1"), ("linux", "6.9-1")]);
    let tasks = machines.iter().enumerate().map(|(i, m)| {
        let own = state(&[
            ("bash", "5.2-1"),
            ("linux", "6.9-1"),
            ("extra", &format!("{i}-1")),
        ]);
        let shared = &shared;
        let s = &s;
        async move { (s.report(m, &own).await, s.report(m, shared).await) }
    });
    let results = futures_join_all(tasks).await;
    for r in &results {
        assert_eq!(*r, (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    }
    let (_, v) = s
        .get(
            &format!("/api/endpoints?pool_id={pool}&status=no_target&per_page=100"),
            &admin,
        )
        .await;
    assert_eq!(v["total"], 50);
    s.stop().await;
}

/// Runs futures concurrently on this task (no extra crate for join_all).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// A machine behind its pool's target (`x 2-1`), with a sync queued by an
/// operator: the server, the machine, the admin's token, the operator's,
/// the target, and the operation's id.
async fn behind_with_a_sync() -> Option<(TestServer, Machine, String, String, String)> {
    let s = TestServer::start(Backend::Postgres).await?;
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    assert_eq!(
        s.report(&a, &state(&[("x", "2-1")])).await,
        StatusCode::NO_CONTENT
    );
    s.set_latest(&a).await;
    assert_eq!(
        s.report(&a, &state(&[("x", "1-1")])).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "behind");
    let op = expect_status(
        StatusCode::ACCEPTED,
        s.post(
            &format!("/api/endpoints/{}/sync", a.id),
            &operator,
            json!({}),
        )
        .await,
    );
    let op = op["id"].as_str().expect("operation id").to_owned();
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "syncing");
    Some((s, a, admin, operator, op))
}

/// A write transaction of the server's own, held open after `f` until
/// the returned sender says commit: the thread (which answers how it
/// ended), that sender, and the transaction's PostgreSQL backend.
type Held = (
    std::thread::JoinHandle<Result<(), StoreError>>,
    std::sync::mpsc::Sender<()>,
    i32,
);

async fn hold_open<F>(store: &Store, f: F) -> Held
where
    F: FnOnce(&mut DbConnection) -> Result<(), StoreError> + Send + 'static,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel::<i32>();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let store = store.clone();
    let held = std::thread::spawn(move || {
        let mut conn = store.blocking_conn().expect("a connection");
        conn.transaction(|c| {
            f(c)?;
            let DbConnection::Pg(pg) = &mut **c else {
                panic!("these tests hold PostgreSQL transactions");
            };
            let backend: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(pg)?;
            done_tx.send(backend).expect("the test waits");
            commit_rx.recv().expect("the test says when");
            Ok(())
        })
    });
    let done = tokio::task::spawn_blocking(move || done_rx.recv())
        .await
        .expect("join");
    let Ok(backend) = done else {
        panic!("the held transaction failed: {:?}", held.join());
    };
    (held, commit_tx, backend)
}

/// Waits until a session of the database `url` waits for a lock that
/// backend `holder` holds.
async fn until_one_waits_for(url: &str, holder: i32) {
    let url = url.to_owned();
    let waited = tokio::task::spawn_blocking(move || {
        let mut pg = diesel::PgConnection::establish(&url).expect("connect");
        let deadline = Instant::now() + Duration::from_secs(60);
        let query = format!(
            "(SELECT count(*) FROM pg_stat_activity WHERE {holder} = ANY(pg_blocking_pids(pid)))"
        );
        while Instant::now() < deadline {
            let waiting: i64 =
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&query))
                    .get_result(&mut pg)
                    .expect("pg_stat_activity");
            if waiting > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    })
    .await
    .expect("join");
    assert!(waited, "no session ever waited for the held transaction");
}

/// Cancels `op` as `token` on a task of its own: its answer's status.
fn cancel(s: &TestServer, op: &str, token: &str) -> tokio::task::JoinHandle<StatusCode> {
    let url = format!("{}/api/operations/{op}/cancel", s.base);
    let request = s.client.post(url).bearer_auth(token).json(&json!({}));
    tokio::spawn(async move { request.send().await.expect("cancel").status() })
}

/// The machine reports the pool's target while the operator cancels its
/// sync. The report's transaction has written the machine's row (status
/// `syncing`: the sync was still active for it) and not committed when the
/// cancel comes. The cancel must wait for it and compute the status from
/// the state the report leaves — `in_sync` — not from the one it would
/// read before the report commits (`behind`).
async fn cancel_against_a_report_in_flight() {
    let Some((s, a, admin, operator, op)) = behind_with_a_sync().await else {
        return;
    };
    let target = state(&[("x", "2-1")]).content_hash().to_string();
    let (report, commit, holder) = hold_open(&s.store, {
        let (id, hash) = (a.id.clone(), target.clone());
        move |c| endpoints::report_state(c, &id, &hash, Content::Unchecked).map(drop)
    })
    .await;
    let cancelled = cancel(&s, &op, &operator);
    until_one_waits_for(s.pg_url().expect("PostgreSQL"), holder).await;
    commit.send(()).expect("the report waits");
    report
        .join()
        .expect("the report's thread")
        .expect("the report commits");
    assert_eq!(cancelled.await.expect("join"), StatusCode::OK);

    let (_, v) = s.get(&format!("/api/operations/{op}"), &admin).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    let ep = s.endpoint(&admin, &a.id).await;
    assert_eq!(ep["state_hash"], target, "{ep}");
    assert_eq!(ep["status"], "in_sync", "{ep}");
    s.stop().await;
}

/// The machine says its sync succeeded while the operator cancels it: the
/// one that comes second finds the operation over — the cancel is refused
/// (409 `operation_finished`) and the operation stays `succeeded`, where
/// reading it before the end committed would have cancelled a finished
/// sync.
async fn cancel_against_the_end_in_flight() {
    let Some((s, a, admin, operator, op)) = behind_with_a_sync().await else {
        return;
    };
    let (end, commit, holder) = hold_open(&s.store, {
        let op = op.clone();
        move |c| {
            let p = Progress {
                status: "succeeded".into(),
                progress: 100,
                message: None,
            };
            operations::report_progress(c, &op, p).map(drop)
        }
    })
    .await;
    let cancelled = cancel(&s, &op, &operator);
    until_one_waits_for(s.pg_url().expect("PostgreSQL"), holder).await;
    commit.send(()).expect("the end waits");
    end.join()
        .expect("the end's thread")
        .expect("the end commits");
    assert_eq!(cancelled.await.expect("join"), StatusCode::CONFLICT);

    let (_, v) = s.get(&format!("/api/operations/{op}"), &admin).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    let ep = s.endpoint(&admin, &a.id).await;
    assert_eq!(
        ep["status"], "behind",
        "the machine has not reported its new state: {ep}"
    );
    s.stop().await;
}
