//! The daemon's side of the server's REST API.

use std::time::Duration;

use pacsync_core::analysis::RepoIndex;
use pacsync_core::package::Package;
use pacsync_core::plan::Policy;
use pacsync_core::state::{PackageState, TargetState};
use pacsync_dbus::TargetInfo;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::store::{CachedTarget, Credentials};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error("the server refused the machine's credentials ({0}); enroll again")]
    Unauthorized(String),
    #[error("server error {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        // The server closes keep-alive connections idle for 30 s; one reused
        // about then may carry the request into the closing connection.
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

pub(crate) async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ServerError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ServerError::Unreachable(e.to_string()))?;
    if status.is_success() {
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        return serde_json::from_slice(body).map_err(|e| ServerError::Api {
            status: status.as_u16(),
            code: "invalid_response".into(),
            message: e.to_string(),
        });
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            "http_error".into(),
            String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        ),
    };
    if status == StatusCode::UNAUTHORIZED {
        return Err(ServerError::Unauthorized(message));
    }
    Err(ServerError::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Enroll with an enrollment token; the returned credentials belong in the
/// state directory.
pub async fn register(
    server_url: &str,
    token: &str,
    name: &str,
) -> Result<Credentials, ServerError> {
    #[derive(Deserialize)]
    struct Registered {
        endpoint: EndpointInfo,
        access_token: String,
        refresh_token: String,
    }
    let url = format!(
        "{}/api/endpoints/register",
        server_url.trim_end_matches('/')
    );
    let resp = http_client()
        .post(url)
        .json(&json!({ "enrollment_token": token, "name": name }))
        .send()
        .await
        .map_err(|e| ServerError::Unreachable(e.to_string()))?;
    let r: Registered = decode(resp).await?;
    Ok(Credentials {
        server_url: server_url.trim_end_matches('/').to_owned(),
        endpoint_id: r.endpoint.id,
        machine_name: r.endpoint.name,
        access_token: r.access_token,
        refresh_token: r.refresh_token,
    })
}

/// What the server says about this machine.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub pool_id: Option<String>,
    #[serde(default)]
    pub pool_name: Option<String>,
}

/// A registered machine's connection to its server. Access tokens are
/// refreshed on the first 401 and the new credentials handed to `on_rotate`.
pub struct ServerClient {
    http: reqwest::Client,
    creds: Mutex<Credentials>,
    on_rotate: Box<dyn Fn(&Credentials) + Send + Sync>,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient").finish_non_exhaustive()
    }
}

impl ServerClient {
    pub fn new(
        creds: Credentials,
        on_rotate: impl Fn(&Credentials) + Send + Sync + 'static,
    ) -> Self {
        ServerClient {
            http: http_client(),
            creds: Mutex::new(creds),
            on_rotate: Box::new(on_rotate),
        }
    }

    pub async fn endpoint_id(&self) -> String {
        self.creds.lock().await.endpoint_id.clone()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ServerError> {
        self.send_with(method, path, |req| match body {
            Some(b) => req.json(b),
            None => req,
        })
        .await
    }

    /// An authorized request to `path`, finished by `build` (body,
    /// headers); sent again once after a token refresh.
    pub(crate) async fn send_with(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ServerError> {
        for attempt in 0..2 {
            let (url, token) = {
                let c = self.creds.lock().await;
                (format!("{}{}", c.server_url, path), c.access_token.clone())
            };
            let req = build(self.http.request(method.clone(), url).bearer_auth(token));
            let resp = req
                .send()
                .await
                .map_err(|e| ServerError::Unreachable(e.to_string()))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.refresh().await?;
                continue;
            }
            return Ok(resp);
        }
        Err(ServerError::Unauthorized(
            "access token refused after refresh".into(),
        ))
    }

    /// Get a new access token with the refresh token (the push channel
    /// does so when the server refuses its handshake).
    pub async fn refresh(&self) -> Result<(), ServerError> {
        #[derive(Deserialize)]
        struct Refreshed {
            access_token: String,
            refresh_token: String,
        }
        let mut c = self.creds.lock().await;
        let resp = self
            .http
            .post(format!("{}/api/auth/refresh", c.server_url))
            .json(&json!({ "refresh_token": c.refresh_token }))
            .send()
            .await
            .map_err(|e| ServerError::Unreachable(e.to_string()))?;
        let r: Refreshed = decode(resp).await?;
        c.access_token = r.access_token;
        c.refresh_token = r.refresh_token;
        (self.on_rotate)(&c);
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ServerError> {
        decode(self.send(method, path, body).await?).await
    }

    /// Report the state: the hash alone first, the packages only when the
    /// server does not have them yet.
    pub async fn report_state(&self, state: &PackageState) -> Result<(), ServerError> {
        let id = self.endpoint_id().await;
        let path = format!("/api/endpoints/{id}/state");
        let hash = state.content_hash().to_string();
        match self
            .call::<Value>(Method::PUT, &path, Some(&json!({ "hash": hash })))
            .await
        {
            Err(ServerError::Api { code, .. }) if code == "state_content_required" => {
                let packages: Vec<&Package> = state.iter().collect();
                self.call::<Value>(
                    Method::PUT,
                    &path,
                    Some(&json!({ "hash": hash, "packages": packages })),
                )
                .await
                .map(drop)
            }
            other => other.map(drop),
        }
    }

    pub async fn endpoint(&self) -> Result<EndpointInfo, ServerError> {
        let id = self.endpoint_id().await;
        self.call(Method::GET, &format!("/api/endpoints/{id}"), None)
            .await
    }

    /// The pool's target and policy; `None` when the machine is in no pool
    /// or its pool has no target.
    pub async fn target(&self) -> Result<Option<CachedTarget>, ServerError> {
        #[derive(Deserialize)]
        struct TargetRow {
            hash: String,
            #[serde(default)]
            created_by: Option<String>,
            #[serde(default)]
            from_endpoint_name: Option<String>,
            #[serde(default)]
            comment: Option<String>,
            #[serde(default)]
            created_at: Option<String>,
        }
        #[derive(Deserialize)]
        struct Target {
            target: TargetRow,
            policy: Policy,
            packages: TargetState,
        }
        let id = self.endpoint_id().await;
        match self
            .call::<Target>(Method::GET, &format!("/api/endpoints/{id}/target"), None)
            .await
        {
            Ok(t) => Ok(Some(CachedTarget {
                info: TargetInfo {
                    hash: t.target.hash,
                    set_by: t.target.created_by.unwrap_or_default(),
                    from_machine: t.target.from_endpoint_name.unwrap_or_default(),
                    set_at: t.target.created_at.as_deref().map_or(0, unix_seconds),
                    comment: t.target.comment.unwrap_or_default(),
                },
                policy: t.policy,
                state: t.packages,
            })),
            Err(ServerError::Api { code, .. }) if code == "unassigned" || code == "no_target" => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn set_latest(&self, comment: &str) -> Result<Value, ServerError> {
        let id = self.endpoint_id().await;
        self.call(
            Method::POST,
            &format!("/api/endpoints/{id}/set-latest"),
            Some(&json!({ "comment": comment })),
        )
        .await
    }

    /// Record an operation the machine starts itself; returns its id.
    pub async fn start_operation(&self, kind: &str) -> Result<String, ServerError> {
        #[derive(Deserialize)]
        struct Op {
            id: String,
        }
        let id = self.endpoint_id().await;
        let op: Op = self
            .call(
                Method::POST,
                &format!("/api/endpoints/{id}/{kind}"),
                Some(&json!({})),
            )
            .await?;
        Ok(op.id)
    }

    pub async fn progress(
        &self,
        op_id: &str,
        status: &str,
        percent: u32,
        message: &str,
    ) -> Result<(), ServerError> {
        self.call::<Value>(
            Method::POST,
            &format!("/api/operations/{op_id}/progress"),
            Some(&json!({ "status": status, "progress": percent.min(100), "message": message })),
        )
        .await
        .map(drop)
    }
}

impl ServerClient {
    /// The push channel's address (`ws[s]://…/api/ws`) and the current
    /// access token to open it with.
    pub async fn push_endpoint(&self) -> (String, String) {
        let c = self.creds.lock().await;
        let url = if let Some(rest) = c.server_url.strip_prefix("https://") {
            format!("wss://{rest}/api/ws")
        } else {
            let rest = c
                .server_url
                .strip_prefix("http://")
                .unwrap_or(&c.server_url);
            format!("ws://{rest}/api/ws")
        };
        (url, c.access_token.clone())
    }

    /// Operations requested for this machine that nobody has started.
    pub async fn queued_operations(&self) -> Result<Vec<RemoteOperation>, ServerError> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<RemoteOperation>,
        }
        let id = self.endpoint_id().await;
        let page: Page = self
            .call(
                Method::GET,
                &format!("/api/endpoints/{id}/operations?status=queued"),
                None,
            )
            .await?;
        Ok(page.items)
    }

    /// Report the repositories: hashes first, then the contents the server
    /// names as missing.
    pub async fn report_repositories(&self, repos: &[RepoIndex]) -> Result<(), ServerError> {
        let hashes: Vec<String> = repos.iter().map(RepoIndex::content_hash).collect();
        let short: Vec<Value> = repos
            .iter()
            .zip(&hashes)
            .map(|(r, h)| json!({ "name": r.name, "hash": h }))
            .collect();
        let missing = match self
            .send(
                Method::PUT,
                "/api/repositories",
                Some(&json!({ "repositories": short })),
            )
            .await?
        {
            r if r.status() == StatusCode::CONFLICT => {
                let body: Value = r
                    .json()
                    .await
                    .map_err(|e| ServerError::Unreachable(e.to_string()))?;
                if body["error"]["code"] != "repository_content_required" {
                    return Err(ServerError::Api {
                        status: 409,
                        code: body["error"]["code"].as_str().unwrap_or_default().into(),
                        message: body["error"]["message"].as_str().unwrap_or_default().into(),
                    });
                }
                body["error"]["details"]["missing"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|h| h.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            }
            r => return decode::<Value>(r).await.map(drop),
        };
        let full: Vec<Value> = repos
            .iter()
            .zip(&hashes)
            .map(|(r, h)| {
                if missing.contains(h) {
                    json!({ "name": r.name, "hash": h, "packages": r.packages })
                } else {
                    json!({ "name": r.name, "hash": h })
                }
            })
            .collect();
        self.call::<Value>(
            Method::PUT,
            "/api/repositories",
            Some(&json!({ "repositories": full })),
        )
        .await
        .map(drop)
    }
}

/// An operation as the server shows it (`GET /api/operations/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteOperation {
    pub id: String,
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub target_hash: Option<String>,
}

/// RFC 3339 → unix seconds; 0 when unreadable (shown as "unknown").
fn unix_seconds(s: &str) -> i64 {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}
