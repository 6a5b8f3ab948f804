//! Races the database must settle: set-latest against set-latest, sync
//! against sync, and many machines reporting at once.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, Machine, TestServer, state};

crate::on_both_backends!(racing_set_latest, racing_syncs, many_reports_at_once);

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
