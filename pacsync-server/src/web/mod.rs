//! The admin web UI: one HTML page, a style sheet and JavaScript modules,
//! all compiled into the binary and served under `/ui/`. The page talks to
//! the JSON API with the browser session of [`session`] and listens on
//! `/api/ws` for live changes. Nothing is fetched from anywhere else: the
//! Content-Security-Policy allows this origin only.

pub mod logs;
pub mod session;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::{ApiError, AppState, Path};

/// Every file the UI is made of: path under `/ui/assets/`, media type,
/// content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css", include_str!("assets/style.css")),
    ("js/app.js", JS, include_str!("assets/js/app.js")),
    ("js/api.js", JS, include_str!("assets/js/api.js")),
    ("js/dom.js", JS, include_str!("assets/js/dom.js")),
    ("js/live.js", JS, include_str!("assets/js/live.js")),
    ("js/drag.js", JS, include_str!("assets/js/drag.js")),
    (
        "js/dashboard.js",
        JS,
        include_str!("assets/js/dashboard.js"),
    ),
    ("js/pool.js", JS, include_str!("assets/js/pool.js")),
    ("js/machine.js", JS, include_str!("assets/js/machine.js")),
    ("js/analysis.js", JS, include_str!("assets/js/analysis.js")),
    ("js/logs.js", JS, include_str!("assets/js/logs.js")),
    ("js/access.js", JS, include_str!("assets/js/access.js")),
    ("js/storage.js", JS, include_str!("assets/js/storage.js")),
];
const JS: &str = "text/javascript";
const INDEX: &str = include_str!("assets/index.html");
const ICON: &str = include_str!("assets/icon.svg");

/// Only this origin; no inline script or style; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(index))
        .route("/ui/icon.svg", get(icon))
        .route("/ui/assets/{*path}", get(asset))
        .route("/ui/session", get(session::current))
        .route("/ui/login", post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/data/operations", get(logs::operations))
        .route("/ui/data/audit", get(logs::audit))
}

async fn to_ui() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/ui/")]).into_response()
}

fn page(media: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Assets change with the binary; revalidating costs little.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn icon() -> Response {
    page("image/svg+xml", ICON)
}

async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(_, media, body)| page(media, body))
        .ok_or_else(|| ApiError::not_found("asset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module an asset imports is served, so the page cannot load a
    /// script that is not there.
    #[test]
    fn every_import_is_an_asset() {
        for (name, _, body) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once("from ")
                    .map(|(_, t)| t)
                    .unwrap_or(line)
                    .trim_matches(|c| c == '\'' || c == '"' || c == ';' || c == ' ');
                let path = target.trim_start_matches("./");
                let full = format!("js/{path}");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == full),
                    "{name} imports {target}, not served"
                );
            }
        }
        assert!(INDEX.contains("/ui/assets/js/app.js"));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
