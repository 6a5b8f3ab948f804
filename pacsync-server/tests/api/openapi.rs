//! `GET /api/openapi.json` describes exactly the routes the router serves.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};

use crate::harness::{Backend, TestServer};

#[tokio::test]
async fn openapi_lists_every_route_and_only_those() {
    let s = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let (st, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            assert!(
                op["responses"].is_object() && op["summary"].is_string(),
                "{method} {path} lacks a summary or responses"
            );
            assert!(
                op["x-pacsync-callers"].is_string(),
                "{method} {path} does not say who may call it"
            );
            described.insert((path.clone(), method.to_uppercase()));
        }
    }
    let served: BTreeSet<(String, String)> = pacsync_server::api::routes()
        .into_iter()
        .map(|(path, method, _)| (path.to_owned(), method.as_str().to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&described).collect();
    let phantom: Vec<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "served but not in openapi.json: {undocumented:?}\nin openapi.json but not served: {phantom:?}"
    );
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').expect("end of ref")];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    s.stop().await;
}
