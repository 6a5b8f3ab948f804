//! Prometheus text metrics: requests by route and status, machines by
//! status. Counted in memory; the machine counts are read from the
//! database at scrape time so every replica reports the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use diesel::prelude::*;

use crate::api::{ApiError, AppState};
use crate::store::schema::endpoints;

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    fn count(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
    }
}

/// Counts every request by its route pattern (not its path, so ids do not
/// explode the label set), and gives any error response that is not ours
/// (a plain-text rejection from a layer) our JSON error body.
pub async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    app.metrics.count(&method, &route, status.as_u16());
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let code = match status.as_u16() {
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            405 => "method_not_allowed",
            404 => "not_found",
            s if s >= 500 => "internal",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        return ApiError::new(status, code, message).into_response();
    }
    response
}

pub async fn render(State(app): State<AppState>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP pacsync_http_requests_total HTTP requests by method, route and status.\n");
    out.push_str("# TYPE pacsync_http_requests_total counter\n");
    if let Ok(m) = app.metrics.requests.lock() {
        for ((method, route, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "pacsync_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
    }
    let counts = app
        .store
        .run(|conn| {
            Ok(endpoints::table
                .group_by(endpoints::status)
                .select((endpoints::status, diesel::dsl::count_star()))
                .load::<(String, i64)>(conn)?)
        })
        .await;
    out.push_str("# HELP pacsync_endpoints Machines by status.\n");
    out.push_str("# TYPE pacsync_endpoints gauge\n");
    let counts: BTreeMap<String, i64> = counts.unwrap_or_default().into_iter().collect();
    for st in pacsync_core::status::EndpointStatus::ALL {
        let n = counts.get(st.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "pacsync_endpoints{{status=\"{st}\"}} {n}");
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
