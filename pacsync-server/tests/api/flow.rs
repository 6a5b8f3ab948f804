//! The main paths: pools, enrollment, reports, status, plan, set-latest,
//! history and rollback.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestServer, assert_error, expect_status, state};

crate::on_both_backends!(pools_crud, machine_lifecycle);

async fn pools_crud(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let body = json!({
        "name": "lab",
        "description": "the lab",
        "keep_extras": true,
        "exclusions": ["nvidia*"],
    });
    let v = expect_status(
        StatusCode::CREATED,
        s.post("/api/pools", &admin, body).await,
    );
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(v["exclusions"], json!(["nvidia*"]));
    assert_eq!(v["offline_grace_secs"], 3600);

    assert_error(
        s.post("/api/pools", &admin, json!({ "name": "lab" })).await,
        StatusCode::CONFLICT,
        "name_taken",
    );

    let v = expect_status(StatusCode::OK, s.get("/api/pools", &admin).await);
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "lab");

    let v = expect_status(
        StatusCode::OK,
        s.patch(
            &format!("/api/pools/{id}"),
            &admin,
            json!({ "description": "new", "auto_sync": true }),
        )
        .await,
    );
    assert_eq!(
        (
            v["description"].as_str(),
            v["auto_sync"].as_bool(),
            v["name"].as_str()
        ),
        (Some("new"), Some(true), Some("lab"))
    );

    assert_error(
        s.patch(
            &format!("/api/pools/{id}"),
            &admin,
            json!({ "exclusions": ["bad["] }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );

    let other = s.create_pool(&admin, "other").await;
    assert_error(
        s.patch(
            &format!("/api/pools/{other}"),
            &admin,
            json!({ "name": "lab" }),
        )
        .await,
        StatusCode::CONFLICT,
        "name_taken",
    );

    assert_eq!(
        s.delete(&format!("/api/pools/{id}"), &admin).await,
        StatusCode::NO_CONTENT
    );
    assert_error(
        s.get(&format!("/api/pools/{id}"), &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        s.delete(&format!("/api/pools/{id}"), &admin).await,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

async fn machine_lifecycle(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let operator = s.login("operator").await;
    let pool = s.create_pool(&admin, "desktops").await;
    let a = s.enroll(&admin, Some(&pool), "alpha").await;
    let b = s.enroll(&admin, Some("desktops"), "beta").await;
    let loose = s.enroll(&admin, None, "loose").await;

    let ea = s.endpoint(&admin, &a.id).await;
    assert_eq!(
        (ea["status"].as_str(), ea["pool_name"].as_str()),
        (Some("no_target"), Some("desktops"))
    );
    let el = s.endpoint(&admin, &loose.id).await;
    assert_eq!(
        (el["status"].as_str(), &el["pool_name"]),
        (Some("unassigned"), &serde_json::Value::Null)
    );
    // The machine reads its own pool's name too.
    let (st, v) = s.get(&format!("/api/endpoints/{}", a.id), &a.token).await;
    assert_eq!(
        (st, v["pool_name"].as_str()),
        (StatusCode::OK, Some("desktops"))
    );

    // Hash only, unknown content: asked for the body; then the full report.
    let sa = state(&[("bash", "5.2-1"), ("linux", "6.9-1"), ("nvidia", "550-1")]);
    assert_error(
        s.call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", a.id),
            Some(&a.token),
            Some(json!({ "hash": sa.content_hash().to_string() })),
        )
        .await,
        StatusCode::CONFLICT,
        "state_content_required",
    );
    assert_error(
        s.call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", a.id),
            Some(&a.token),
            Some(json!({ "hash": "00".repeat(32), "packages": sa })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "hash_mismatch",
    );
    assert_eq!(s.report(&a, &sa).await, StatusCode::NO_CONTENT);
    // The same content from another machine: the hash alone is enough.
    expect_status(
        StatusCode::NO_CONTENT,
        s.call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", b.id),
            Some(&b.token),
            Some(json!({ "hash": sa.content_hash().to_string() })),
        )
        .await,
    );

    assert_error(
        s.get(&format!("/api/endpoints/{}/plan", a.id), &admin)
            .await,
        StatusCode::CONFLICT,
        "no_target",
    );

    // a's state becomes the target; pool exclusions apply.
    expect_status(
        StatusCode::OK,
        s.patch(
            &format!("/api/pools/{pool}"),
            &admin,
            json!({ "exclusions": ["nvidia*"] }),
        )
        .await,
    );
    let t1 = expect_status(
        StatusCode::OK,
        s.post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &operator,
            json!({ "comment": "first", "expected_target": null }),
        )
        .await,
    );
    assert_eq!(
        (
            t1["seq"].as_i64(),
            t1["from_endpoint_name"].as_str(),
            t1["created_by"].as_str()
        ),
        (Some(1), Some("alpha"), Some("user:operator"))
    );
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "in_sync");
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "in_sync");
    let tv = expect_status(
        StatusCode::OK,
        s.get(
            &format!(
                "/api/pools/{pool}/targets/{}",
                t1["id"].as_str().expect("id")
            ),
            &admin,
        )
        .await,
    );
    assert!(
        tv["packages"].get("nvidia").is_none() && tv["packages"].get("bash").is_some(),
        "{tv}"
    );

    // b upgrades: ahead; a is then behind the new target b sets.
    let sb = state(&[("bash", "5.3-1"), ("linux", "6.9-1"), ("nvidia", "550-1")]);
    assert_eq!(s.report(&b, &sb).await, StatusCode::NO_CONTENT);
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "ahead");
    let v = expect_status(
        StatusCode::OK,
        s.get(&format!("/api/endpoints/{}/plan", b.id), &b.token)
            .await,
    );
    assert_eq!(v["summary"]["downgrade"], 1);
    assert_eq!(v["steps"][0]["name"], "bash");

    // A stale expected target loses.
    assert_error(
        s.post(
            &format!("/api/endpoints/{}/set-latest", b.id),
            &b.token,
            json!({ "expected_target": null }),
        )
        .await,
        StatusCode::CONFLICT,
        "target_conflict",
    );
    let t2 = expect_status(
        StatusCode::OK,
        s.post(
            &format!("/api/endpoints/{}/set-latest", b.id),
            &b.token,
            json!({ "expected_target": t1["id"], "comment": "bash 5.3" }),
        )
        .await,
    );
    assert_eq!(t2["created_by"], format!("machine:{}", b.id));
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "behind");
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "in_sync");

    let v = expect_status(
        StatusCode::OK,
        s.get(&format!("/api/pools/{pool}/targets"), &admin).await,
    );
    assert_eq!(v["total"], 2);
    assert_eq!(v["items"][0]["seq"], 2);
    assert_eq!(v["items"][1]["comment"], "first");

    // Roll back to the first target: a new history entry, statuses follow.
    let r = expect_status(
        StatusCode::OK,
        s.post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": t1["id"], "comment": "oops" }),
        )
        .await,
    );
    assert_eq!(
        (r["seq"].as_i64(), r["kind"].as_str(), r["hash"].as_str()),
        (Some(3), Some("rollback"), t1["hash"].as_str())
    );
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "in_sync");
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "ahead");
    assert_error(
        s.post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_target",
    );

    // The machine fetches its target with the policy.
    let v = expect_status(
        StatusCode::OK,
        s.get(&format!("/api/endpoints/{}/target", a.id), &a.token)
            .await,
    );
    assert_eq!(v["policy"]["exclusions"]["patterns"], json!(["nvidia*"]));

    // Moving a machine between pools and out of them.
    let v = expect_status(
        StatusCode::OK,
        s.patch(
            &format!("/api/endpoints/{}", a.id),
            &admin,
            json!({ "pool_id": null, "name": "alpha-2" }),
        )
        .await,
    );
    assert_eq!(
        (v["status"].as_str(), v["name"].as_str()),
        (Some("unassigned"), Some("alpha-2"))
    );
    assert_error(
        s.patch(
            &format!("/api/endpoints/{}", a.id),
            &admin,
            json!({ "pool_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_pool",
    );

    let v = expect_status(
        StatusCode::OK,
        s.get("/api/endpoints?per_page=2&page=1", &admin).await,
    );
    assert_eq!(
        (v["total"].as_i64(), v["items"].as_array().map(Vec::len)),
        (Some(3), Some(2))
    );
    let (st, v) = s
        .get(&format!("/api/endpoints?pool_id={pool}"), &admin)
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(v["items"][0]["pool_name"], "desktops");
    let (st, v) = s.get("/api/endpoints?status=unassigned", &admin).await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(2)));

    let (st, v) = s
        .get(&format!("/api/endpoints/{}/states", b.id), &admin)
        .await;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(2)));
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/state", b.id), &admin)
        .await;
    assert_eq!(
        (st, v["hash"].as_str()),
        (StatusCode::OK, Some(sb.content_hash().to_string().as_str()))
    );

    // Deleting a pool leaves its machines unassigned.
    assert_eq!(
        s.delete(&format!("/api/pools/{pool}"), &admin).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "unassigned");

    assert_eq!(
        s.delete(&format!("/api/endpoints/{}", b.id), &admin).await,
        StatusCode::NO_CONTENT
    );
    expect_status(
        StatusCode::NOT_FOUND,
        s.get(&format!("/api/endpoints/{}", b.id), &admin).await,
    );
    // The deleted machine's token stops working.
    expect_status(
        StatusCode::UNAUTHORIZED,
        s.get(&format!("/api/endpoints/{}", b.id), &b.token).await,
    );

    let v = expect_status(
        StatusCode::OK,
        s.get("/api/audit?per_page=100", &admin).await,
    );
    let actions: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["action"].as_str())
        .collect();
    for want in [
        "pool.create",
        "endpoint.register",
        "pool.set_latest",
        "pool.rollback",
        "endpoint.delete",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    s.stop().await;
}
