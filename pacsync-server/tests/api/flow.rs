//! The main paths: pools, enrollment, reports, status, plan, set-latest,
//! history and rollback.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestServer, state};

crate::on_both_backends!(pools_crud, machine_lifecycle);

async fn pools_crud(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    let admin = s.login("admin").await;
    let (st, v) = s
        .post("/api/pools", &admin, json!({ "name": "lab", "description": "the lab", "keep_extras": true, "exclusions": ["nvidia*"] }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(v["exclusions"], json!(["nvidia*"]));
    assert_eq!(v["offline_grace_secs"], 3600);

    let (st, v) = s.post("/api/pools", &admin, json!({ "name": "lab" })).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );

    let (st, v) = s.get("/api/pools", &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "lab");

    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{id}"),
            Some(&admin),
            Some(json!({ "description": "new", "auto_sync": true })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["description"].as_str(),
            v["auto_sync"].as_bool(),
            v["name"].as_str()
        ),
        (Some("new"), Some(true), Some("lab"))
    );

    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{id}"),
            Some(&admin),
            Some(json!({ "exclusions": ["bad["] })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );

    let other = s.create_pool(&admin, "other").await;
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{other}"),
            Some(&admin),
            Some(json!({ "name": "lab" })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );

    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/pools/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s.get(&format!("/api/pools/{id}"), &admin).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/pools/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
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
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", a.id),
            Some(&a.token),
            Some(json!({ "hash": sa.content_hash().to_string() })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("state_content_required"))
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", a.id),
            Some(&a.token),
            Some(json!({ "hash": "00".repeat(32), "packages": sa })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch"))
    );
    assert_eq!(s.report(&a, &sa).await, StatusCode::NO_CONTENT);
    // The same content from another machine: the hash alone is enough.
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("/api/endpoints/{}/state", b.id),
            Some(&b.token),
            Some(json!({ "hash": sa.content_hash().to_string() })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let (st, v) = s
        .get(&format!("/api/endpoints/{}/plan", a.id), &admin)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_target"))
    );

    // a's state becomes the target; pool exclusions apply.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            Some(json!({ "exclusions": ["nvidia*"] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, t1) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", a.id),
            &operator,
            json!({ "comment": "first", "expected_target": null }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t1}");
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
    let (st, tv) = s
        .get(
            &format!(
                "/api/pools/{pool}/targets/{}",
                t1["id"].as_str().expect("id")
            ),
            &admin,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        tv["packages"].get("nvidia").is_none() && tv["packages"].get("bash").is_some(),
        "{tv}"
    );

    // b upgrades: ahead; a is then behind the new target b sets.
    let sb = state(&[("bash", "5.3-1"), ("linux", "6.9-1"), ("nvidia", "550-1")]);
    assert_eq!(s.report(&b, &sb).await, StatusCode::NO_CONTENT);
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "ahead");
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/plan", b.id), &b.token)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["summary"]["downgrade"], 1);
    assert_eq!(v["steps"][0]["name"], "bash");

    // A stale expected target loses.
    let (st, v) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", b.id),
            &b.token,
            json!({ "expected_target": null }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("target_conflict"))
    );
    let (st, t2) = s
        .post(
            &format!("/api/endpoints/{}/set-latest", b.id),
            &b.token,
            json!({ "expected_target": t1["id"], "comment": "bash 5.3" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    assert_eq!(t2["created_by"], format!("machine:{}", b.id));
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "behind");
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "in_sync");

    let (st, v) = s.get(&format!("/api/pools/{pool}/targets"), &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["total"], 2);
    assert_eq!(v["items"][0]["seq"], 2);
    assert_eq!(v["items"][1]["comment"], "first");

    // Roll back to the first target: a new history entry, statuses follow.
    let (st, r) = s
        .post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": t1["id"], "comment": "oops" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (r["seq"].as_i64(), r["kind"].as_str(), r["hash"].as_str()),
        (Some(3), Some("rollback"), t1["hash"].as_str())
    );
    assert_eq!(s.endpoint(&admin, &a.id).await["status"], "in_sync");
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "ahead");
    let (st, v) = s
        .post(
            &format!("/api/pools/{pool}/rollback"),
            &admin,
            json!({ "target_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7" }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_target"))
    );

    // The machine fetches its target with the policy.
    let (st, v) = s
        .get(&format!("/api/endpoints/{}/target", a.id), &a.token)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["policy"]["exclusions"]["patterns"], json!(["nvidia*"]));

    // Moving a machine between pools and out of them.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/endpoints/{}", a.id),
            Some(&admin),
            Some(json!({ "pool_id": null, "name": "alpha-2" })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["name"].as_str()),
        (Some("unassigned"), Some("alpha-2"))
    );
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/endpoints/{}", a.id),
            Some(&admin),
            Some(json!({ "pool_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7" })),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_pool"))
    );

    let (st, v) = s.get("/api/endpoints?per_page=2&page=1", &admin).await;
    assert_eq!(st, StatusCode::OK);
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
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/pools/{pool}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.endpoint(&admin, &b.id).await["status"], "unassigned");

    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/endpoints/{}", b.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get(&format!("/api/endpoints/{}", b.id), &admin).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The deleted machine's token stops working.
    let (st, _) = s.get(&format!("/api/endpoints/{}", b.id), &b.token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let (st, v) = s.get("/api/audit?per_page=100", &admin).await;
    assert_eq!(st, StatusCode::OK);
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
