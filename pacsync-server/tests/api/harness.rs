//! Starting a server and talking to it.

use std::collections::HashMap;

use pacsync_core::package::{InstallReason, Package};
use pacsync_core::state::PackageState;
use pacsync_server::Settings;
use pacsync_server::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    /// The server's database, for checks the API does not show.
    pub store: pacsync_server::store::Store,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    _pg: Option<crate::pg::Postgres>,
    /// The PostgreSQL URL, for a second replica on the same database.
    pg_url: Option<String>,
}

/// A registered machine and its credentials.
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: String,
    pub token: String,
    pub refresh: String,
}

pub fn settings_for(dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert(
        "PACSYNC_DATA_DIR".into(),
        dir.to_string_lossy().into_owned(),
    );
    vars.insert("JWT_SECRET_KEY".into(), JWT_SECRET.into());
    vars.insert("API_RATE_LIMIT".into(), "0".into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Settings::from_sources(None, |k| vars.get(k).cloned()).expect("valid settings")
}

impl TestServer {
    /// `None` when the backend is not available here (PostgreSQL skipped).
    pub async fn start(backend: Backend) -> Option<TestServer> {
        TestServer::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestServer> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                tokio::task::spawn_blocking(crate::pg::start)
                    .await
                    .expect("pg start")?,
            ),
        };
        let url = pg.as_ref().map(|p| p.url.clone());
        let mut s = TestServer::launch(url, extra, true).await;
        s._pg = pg;
        Some(s)
    }

    /// A server on `pg` reached through `url` (its own connection options).
    pub async fn on_postgres(pg: crate::pg::Postgres, url: &str) -> TestServer {
        let mut s = TestServer::launch(Some(url.to_owned()), &[], true).await;
        s._pg = Some(pg);
        s
    }

    /// The PostgreSQL database's URL (None on SQLite).
    pub fn pg_url(&self) -> Option<&str> {
        self.pg_url.as_deref()
    }

    /// A second server on this one's PostgreSQL database (None on SQLite):
    /// two replicas behind one load balancer.
    pub async fn replica(&self) -> Option<TestServer> {
        let url = self.pg_url.clone()?;
        Some(TestServer::launch(Some(url), &[], false).await)
    }

    async fn launch(pg_url: Option<String>, extra: &[(&str, &str)], users: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vars: Vec<(&str, &str)> = extra.to_vec();
        if let Some(url) = &pg_url {
            vars.push(("DATABASE_TYPE", "postgresql"));
            vars.push(("DATABASE_URL", url));
        }
        let settings = settings_for(dir.path(), &vars);
        let server = pacsync_server::Server::prepare(settings)
            .await
            .expect("server prepares");
        if users {
            let store = server.store().clone();
            tokio::task::spawn_blocking(move || {
                for (name, role) in [
                    ("admin", Role::Admin),
                    ("operator", Role::Operator),
                    ("viewer", Role::Viewer),
                ] {
                    pacsync_server::admin::create_user(&store, name, role, PASSWORD)
                        .expect("create user");
                }
            })
            .await
            .expect("users");
        }
        let store = server.store().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        TestServer {
            store,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
            _pg: None,
            pg_url,
        }
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_client_error() || status.is_server_error() {
            assert_error_body(status, &value);
        }
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// DELETE answers with no body: its status.
    pub async fn delete(&self, path: &str, token: &str) -> StatusCode {
        self.call(Method::DELETE, path, Some(token), None).await.0
    }

    /// A new API token made by `admin`: its id and its secret.
    pub async fn create_api_token(&self, admin: &str, name: &str, role: &str) -> (String, String) {
        let v = expect_status(
            StatusCode::CREATED,
            self.post(
                "/api/api-tokens",
                admin,
                json!({ "name": name, "role": role }),
            )
            .await,
        );
        (
            v["id"].as_str().expect("id").to_owned(),
            v["token"].as_str().expect("token").to_owned(),
        )
    }

    /// A GET without a token (package files, snapshot repositories): the
    /// status and the body's bytes.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        (resp.status(), resp.bytes().await.expect("body").to_vec())
    }

    /// `set-latest` by the machine itself: the new target's id.
    pub async fn set_latest(&self, m: &Machine) -> String {
        let v = expect_status(
            StatusCode::OK,
            self.post(
                &format!("/api/endpoints/{}/set-latest", m.id),
                &m.token,
                json!({}),
            )
            .await,
        );
        v["id"].as_str().expect("target id").to_owned()
    }

    pub async fn login(&self, name: &str) -> String {
        let (st, v) = self
            .call(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({ "username": name, "password": PASSWORD })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn create_pool(&self, admin: &str, name: &str) -> String {
        let (st, v) = self
            .post("/api/pools", admin, json!({ "name": name }))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    pub async fn enroll(&self, admin: &str, pool: Option<&str>, name: &str) -> Machine {
        let body = match pool {
            Some(p) => json!({ "pool": p }),
            None => json!({}),
        };
        let (st, v) = self.post("/api/enrollment-tokens", admin, body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let token = v["token"].as_str().expect("token").to_owned();
        let (st, v) = self
            .call(
                Method::POST,
                "/api/endpoints/register",
                None,
                Some(json!({ "enrollment_token": token, "name": name })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        Machine {
            id: v["endpoint"]["id"].as_str().expect("id").to_owned(),
            token: v["access_token"].as_str().expect("access").to_owned(),
            refresh: v["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Reports `state` the way a daemon does: hash first, content if asked.
    pub async fn report(&self, m: &Machine, state: &PackageState) -> StatusCode {
        let path = format!("/api/endpoints/{}/state", m.id);
        let hash = state.content_hash().to_string();
        let (st, v) = self
            .call(
                Method::PUT,
                &path,
                Some(&m.token),
                Some(json!({ "hash": hash })),
            )
            .await;
        if st != StatusCode::CONFLICT {
            return st;
        }
        assert_eq!(v["error"]["code"], "state_content_required", "{v}");
        let (st, _) = self
            .call(
                Method::PUT,
                &path,
                Some(&m.token),
                Some(json!({ "hash": hash, "packages": state })),
            )
            .await;
        st
    }

    pub async fn endpoint(&self, admin: &str, id: &str) -> Value {
        let (st, v) = self.get(&format!("/api/endpoints/{id}"), admin).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Every error is `{"error": {"code","message","details","timestamp"}}`
/// and never a 500.
pub fn assert_error_body(status: StatusCode, v: &Value) {
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "500: {v}");
    let e = &v["error"];
    assert!(
        e["code"].is_string() && e["message"].is_string() && e["timestamp"].is_string(),
        "{status}: not an error body: {v}"
    );
    assert!(e.get("details").is_some(), "{v}");
}

/// The body of an answer that has the status `want`.
#[track_caller]
pub fn expect_status(want: StatusCode, (status, body): (StatusCode, Value)) -> Value {
    assert_eq!(status, want, "{body}");
    body
}

/// An error answer with this status and error code.
#[track_caller]
pub fn assert_error((status, body): (StatusCode, Value), want: StatusCode, code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want, Some(code)),
        "{body}"
    );
}

pub fn pkg(name: &str, version: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: "x86_64".into(),
        reason: InstallReason::Explicit,
        origin: None,
        installed_size: 1024,
        depends: vec![],
    }
}

pub fn state(pkgs: &[(&str, &str)]) -> PackageState {
    pkgs.iter().map(|(n, v)| pkg(n, v)).collect()
}

/// The sha256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A package file as makepkg would make it: `.PKGINFO` first, zstd.
pub fn package(name: &str, version: &str, payload: &str) -> Vec<u8> {
    let info = format!(
        "pkgname = {name}\npkgbase = {name}\npkgver = {version}\npkgdesc = test\n\
         arch = x86_64\nsize = {}\ndepend = glibc\n",
        payload.len()
    );
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        (".PKGINFO".to_owned(), info.as_bytes()),
        (format!("usr/share/{name}/data"), payload.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).expect("append");
    }
    zstd::encode_all(&b.into_inner().expect("tar")[..], 3).expect("zstd")
}
