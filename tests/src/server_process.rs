//! A real `pacsync-server` process on 127.0.0.1 with its own SQLite data
//! directory (or a given database), and an admin client for its API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::scratch::ScratchDir;

/// The built `pacsync-server` next to a test binary of any package.
pub fn sibling_binary(test_binary: &str, name: &str) -> PathBuf {
    let path = Path::new(test_binary).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace)",
        path.display()
    );
    path
}

#[derive(Debug)]
pub struct ServerProcess {
    binary: PathBuf,
    data: ScratchDir,
    extra_env: Vec<(String, String)>,
    port: u16,
    child: Option<Child>,
}

impl ServerProcess {
    /// Start on a free port with an embedded SQLite database.
    pub fn start(binary: &Path) -> anyhow::Result<ServerProcess> {
        Self::start_with_env(binary, &[])
    }

    /// Start with extra environment (e.g. `DATABASE_TYPE=postgresql`).
    pub fn start_with_env(binary: &Path, env: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        let mut me = ServerProcess {
            binary: binary.to_owned(),
            data: ScratchDir::new("pacsync-server")?,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port: 0,
            child: None,
        };
        me.spawn()?;
        Ok(me)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env("PACSYNC_DATA_DIR", self.data.path())
            .env("HTTP_HOST", "127.0.0.1")
            .env("HTTP_PORT", self.port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("API_RATE_LIMIT", "100000");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = self
            .command()
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        // The server prints where it listens once it accepts connections.
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        else {
            let _ = child.kill();
            bail!("pacsync-server did not start: {line:?}");
        };
        self.port = addr.rsplit(':').next().context("port")?.parse()?;
        self.child = Some(child);
        Ok(())
    }

    /// The data directory (SQLite database, package archive), for the
    /// server's own subcommands.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL the server; [`ServerProcess::restart`] brings it back on the
    /// same port and data.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// `pacsync-server admin ARGS…` on the same data; returns stdout.
    pub fn admin(&self, args: &[&str], password: Option<&str>) -> anyhow::Result<String> {
        let mut cmd = self.command();
        cmd.arg("admin").args(args);
        if let Some(p) = password {
            cmd.env("PACSYNC_ADMIN_PASSWORD", p);
        }
        let out = crate::command::run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Create an admin user and log in: a client for the API.
    pub fn admin_client(&self) -> anyhow::Result<ApiClient> {
        let password = "correct horse battery staple";
        self.admin(&["create-user", "admin", "--role", "admin"], Some(password))?;
        let mut client = ApiClient {
            base: self.url(),
            token: String::new(),
            http: reqwest::blocking::Client::new(),
        };
        let login = client.call(
            "POST",
            "/api/auth/login",
            Some(json!({ "username": "admin", "password": password })),
        )?;
        client.token = login["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned();
        Ok(client)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A logged-in user of the REST API.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl ApiClient {
    /// The bearer token, e.g. for the push channel.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `METHOD path` with an optional JSON body; non-2xx is an error that
    /// carries the server's error body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text()?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Create a pool and an enrollment token bound to it.
    pub fn pool_with_token(&self, name: &str) -> anyhow::Result<(String, String)> {
        let pool = self.call("POST", "/api/pools", Some(json!({ "name": name })))?;
        let id = pool["id"].as_str().context("pool id")?.to_owned();
        let token = self.call(
            "POST",
            "/api/enrollment-tokens",
            Some(json!({ "pool": id })),
        )?;
        Ok((id, token["token"].as_str().context("token")?.to_owned()))
    }
}

/// A machine speaking the API directly (no daemon): for making targets
/// from a known package list, and for simulating fleets.
#[derive(Debug)]
pub struct ApiMachine {
    pub id: String,
    client: ApiClient,
}

impl ApiClient {
    /// Enroll a machine named `name` with `token`.
    pub fn register_machine(&self, token: &str, name: &str) -> anyhow::Result<ApiMachine> {
        let anonymous = ApiClient {
            base: self.base.clone(),
            token: String::new(),
            http: self.http.clone(),
        };
        let r = anonymous.call(
            "POST",
            "/api/endpoints/register",
            Some(json!({ "enrollment_token": token, "name": name })),
        )?;
        Ok(ApiMachine {
            id: r["endpoint"]["id"]
                .as_str()
                .context("endpoint id")?
                .to_owned(),
            client: ApiClient {
                base: self.base.clone(),
                token: r["access_token"]
                    .as_str()
                    .context("access token")?
                    .to_owned(),
                http: self.http.clone(),
            },
        })
    }
}

impl ApiMachine {
    /// Report a state given as `(name, version, explicit)` triples.
    pub fn report(&self, packages: &[(&str, &str, bool)]) -> anyhow::Result<()> {
        let state: pacsync_core::state::PackageState = packages
            .iter()
            .map(|(name, version, explicit)| pacsync_core::package::Package {
                name: (*name).to_owned(),
                version: (*version).into(),
                arch: "any".into(),
                reason: if *explicit {
                    pacsync_core::package::InstallReason::Explicit
                } else {
                    pacsync_core::package::InstallReason::Dependency
                },
                origin: None,
                installed_size: 0,
                depends: Vec::new(),
            })
            .collect();
        let hash = state.content_hash().to_string();
        self.client.call(
            "PUT",
            &format!("/api/endpoints/{}/state", self.id),
            Some(json!({ "hash": hash, "packages": state })),
        )?;
        Ok(())
    }

    /// Make the reported state the pool's target.
    pub fn set_latest(&self, comment: &str) -> anyhow::Result<Value> {
        self.client.call(
            "POST",
            &format!("/api/endpoints/{}/set-latest", self.id),
            Some(json!({ "comment": comment })),
        )
    }
}
