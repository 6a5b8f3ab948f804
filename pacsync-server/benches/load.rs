//! Load generator for pacsync-server (issue 3's benchmark; figures in
//! docs/benchmarks.md). Starts the release server binary as its own process
//! on SQLite or a throwaway PostgreSQL, registers a fleet, and measures at a
//! fixed concurrency: unchanged-state reports, changed-state reports (to a
//! state the server knows, and with a new content upload), and the machine
//! list. Prints each figure with p50/p99, the server's RSS, the database
//! size and the rows unchanged reports added.
//!
//! cargo bench -p pacsync-server --bench load -- [--backend sqlite|postgres]
//!     [--machines 10000] [--packages 1500] [--concurrency 16] [--seconds 10]

/// The load generator shares the cores with the server: a lean allocator
/// leaves the server more of them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/api/pg.rs"]
#[allow(dead_code, missing_debug_implementations, clippy::unwrap_used)]
mod pg;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use pacsync_core::package::{InstallReason, Origin, Package};
use pacsync_core::state::PackageState;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Args {
    backend: String,
    machines: usize,
    packages: usize,
    concurrency: usize,
    seconds: u64,
    /// Distinct states the fleet starts with (machines share them).
    distinct: usize,
    /// Only these figures (unchanged, known, new, list); empty: all.
    only: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        backend: "sqlite".into(),
        machines: 10_000,
        packages: 1500,
        concurrency: 16,
        seconds: 10,
        distinct: 20,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // cargo bench passes --bench; ignore what is not ours.
        let mut value = || it.next().context("flag without value");
        match flag.as_str() {
            "--backend" => a.backend = value()?,
            "--machines" => a.machines = value()?.parse()?,
            "--packages" => a.packages = value()?.parse()?,
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--distinct" => a.distinct = value()?.parse()?,
            "--only" => a.only = value()?.split(',').map(str::to_owned).collect(),
            _ => {}
        }
    }
    Ok(a)
}

/// A plausible 1,500-package state; `variant` bumps a few versions.
fn make_state(packages: usize, variant: usize) -> PackageState {
    (0..packages)
        .map(|i| {
            let bump = if i % 97 == variant % 97 { variant } else { 0 };
            Package {
                name: format!("package-{i:04}"),
                version: format!("{}.{}.{}-{}", i % 7 + 1, i % 13, bump, i % 3 + 1).into(),
                arch: "x86_64".into(),
                reason: if i % 4 == 0 {
                    InstallReason::Explicit
                } else {
                    InstallReason::Dependency
                },
                origin: Some(Origin::Repo(
                    if i % 2 == 0 { "core" } else { "extra" }.into(),
                )),
                installed_size: 1024 * (i as u64 + 1),
                depends: (1..=3)
                    .map(|d| format!("package-{:04}", (i + d * 31) % packages))
                    .collect(),
            }
        })
        .collect()
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
    _pg: Option<pg::Postgres>,
    pg_url: Option<String>,
    db_path: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "benchmark password";
const SECRET: &str = "benchmark-secret-benchmark-secret-0123";

fn start(backend: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        "sqlite" => None,
        "postgres" => Some(pg::start().context("PostgreSQL binaries not found")?),
        other => bail!("unknown backend {other}"),
    };
    let pg_url = pg.as_ref().map(|p| p.url.clone());
    let command = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pacsync-server"));
        c.env_clear()
            .env("PACSYNC_DATA_DIR", dir.path())
            .env("JWT_SECRET_KEY", SECRET)
            .env("API_RATE_LIMIT", "0")
            .env("HTTP_PORT", "0")
            .env("LOG_LEVEL", "warn")
            .env("PACSYNC_ADMIN_PASSWORD", PASSWORD);
        // The allocator settings the Dockerfile and the systemd unit ship;
        // MIMALLOC_* / MALLOC_* in the generator's environment override them.
        c.env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
        for (k, v) in std::env::vars() {
            if k.starts_with("MIMALLOC_") || k.starts_with("MALLOC_") {
                c.env(k, v);
            }
        }
        if let Some(u) = &pg_url {
            c.env("DATABASE_TYPE", "postgresql").env("DATABASE_URL", u);
        }
        c
    };
    let out = command().args(["admin", "create-user", "admin"]).output()?;
    if !out.status.success() {
        bail!("create-user: {}", String::from_utf8_lossy(&out.stderr));
    }
    // PACSYNC_LOAD_WRAPPER (e.g. "heaptrack") runs the server under a tool.
    let mut serve = match std::env::var("PACSYNC_LOAD_WRAPPER") {
        Ok(w) if !w.is_empty() => {
            let mut c = Command::new(w);
            c.arg(env!("CARGO_BIN_EXE_pacsync-server"));
            for (k, v) in command().get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            c
        }
        _ => command(),
    };
    let mut child = serve.arg("serve").stdout(Stdio::piped()).spawn()?;
    // The first line with an address (a wrapper may print its own first).
    let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && !line.contains("http://") {
        line.clear();
    }
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no listen address printed")?
        .to_owned();
    Ok(Server {
        child,
        base,
        db_path: dir.path().join("pacsync.db"),
        _dir: dir,
        _pg: pg,
        pg_url,
    })
}

impl Server {
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

#[derive(Debug, Default)]
struct Outcome {
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: usize,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1].as_secs_f64() * 1000.0
    }

    fn line(&mut self, what: &str) -> String {
        format!(
            "| {what} | {:.0}/s | {:.1} ms | {:.1} ms | {} | {} |",
            self.rate(),
            self.pct(0.50),
            self.pct(0.99),
            self.done,
            self.failures
        )
    }
}

/// Runs `op(i)` from `concurrency` tasks for `seconds`; `op` returns
/// whether the request succeeded.
async fn drive<F, Fut>(concurrency: usize, seconds: u64, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if op(i).await {
                    lat.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
            (lat, failures)
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        if let Ok((lat, f)) = t.await {
            out.latencies.extend(lat);
            out.failures += f;
        }
    }
    out.elapsed = start.elapsed();
    out.done = out.latencies.len();
    out
}

fn note_rss(server: &Server, after: &str) {
    let (rss, peak) = server.rss_kib();
    eprintln!("after {after}: server RSS {rss} KiB (peak {peak} KiB)");
}

async fn count_rows(server: &Server) -> anyhow::Result<Vec<(String, i64)>> {
    use diesel::prelude::*;
    let settings = pacsync_server::Settings::from_sources(None, |k| match k {
        "PACSYNC_DATA_DIR" => server
            .db_path
            .parent()
            .map(|p| p.to_string_lossy().into_owned()),
        "DATABASE_TYPE" => server.pg_url.as_ref().map(|_| "postgresql".to_owned()),
        "DATABASE_URL" => server.pg_url.clone(),
        "DATABASE_POOL_SIZE" => Some("1".into()),
        _ => None,
    })?;
    let store = pacsync_server::store::Store::open(&settings.database)?;
    let mut conn = store.blocking_conn()?;
    let mut out = Vec::new();
    for table in [
        "endpoints",
        "endpoint_states",
        "states",
        "operations",
        "audit_log",
        "refresh_tokens",
    ] {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result(&mut *conn)?;
        out.push((table.to_owned(), n.n));
    }
    Ok(out)
}

async fn db_size(server: &Server) -> anyhow::Result<u64> {
    if server.pg_url.is_none() {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", server.db_path.display());
            total += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        }
        return Ok(total);
    }
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let url = server.pg_url.clone().context("url")?;
    let mut c = diesel::PgConnection::establish(&url)?;
    let n: N =
        diesel::sql_query("SELECT pg_database_size(current_database()) AS n").get_result(&mut c)?;
    Ok(u64::try_from(n.n)?)
}

/// Runs `op(i)` for every `i < n` from `concurrency` tasks; returns how
/// many failed.
async fn run_all<F, Fut>(concurrency: usize, n: usize, op: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return failed;
                }
                if !op(i).await {
                    failed += 1;
                }
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap_or(1);
    }
    failed
}

async fn put_state(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
    hash: &str,
    full: &Bytes,
) -> bool {
    let url = format!("{base}/api/endpoints/{id}/state");
    let Ok(r) = client
        .put(&url)
        .bearer_auth(token)
        .json(&json!({ "hash": hash }))
        .send()
        .await
    else {
        return false;
    };
    match r.status() {
        StatusCode::NO_CONTENT => true,
        StatusCode::CONFLICT => client
            .put(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(full.clone())
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT),
        _ => false,
    }
}

/// A state's hash and its full report body, serialized once.
fn full_body(state: &PackageState) -> (String, Bytes) {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        hash: &'a str,
        packages: &'a PackageState,
    }
    let hash = state.content_hash().to_string();
    let body = serde_json::to_vec(&Report {
        hash: &hash,
        packages: state,
    })
    .unwrap_or_default();
    (hash, Bytes::from(body))
}

async fn json_post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut r = client.post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    Ok(r.send().await?.error_for_status()?.json().await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    eprintln!("{a:?}");
    let server = start(&a.backend)?;
    eprintln!("server pid {}", server.child.id());
    let want = |phase: &str| a.only.is_empty() || a.only.iter().any(|o| o == phase);
    let base = Arc::new(server.base.clone());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let login = json_post(
        &client,
        format!("{base}/api/auth/login"),
        None,
        json!({ "username": "admin", "password": PASSWORD }),
    )
    .await?;
    let admin = Arc::new(login["access_token"].as_str().context("login")?.to_owned());
    let pool = json_post(
        &client,
        format!("{base}/api/pools"),
        Some(&admin),
        json!({ "name": "fleet" }),
    )
    .await?;
    let enroll = json_post(
        &client,
        format!("{base}/api/enrollment-tokens"),
        Some(&admin),
        json!({ "pool": pool["id"] }),
    )
    .await?;
    let enroll = Arc::new(
        enroll["token"]
            .as_str()
            .context("enrollment token")?
            .to_owned(),
    );

    // The fleet: registered, each machine on one of `distinct` states, the
    // first machine's state the pool's target.
    let t = Instant::now();
    let machines: Arc<Vec<std::sync::Mutex<(String, String)>>> = Arc::new(
        (0..a.machines)
            .map(|_| std::sync::Mutex::default())
            .collect(),
    );
    let failed = run_all(a.concurrency, a.machines, {
        let (client, base, enroll, machines) = (
            client.clone(),
            base.clone(),
            enroll.clone(),
            machines.clone(),
        );
        move |i| {
            let (client, base, enroll, machines) = (
                client.clone(),
                base.clone(),
                enroll.clone(),
                machines.clone(),
            );
            async move {
                let Ok(v) = json_post(
                    &client,
                    format!("{base}/api/endpoints/register"),
                    None,
                    json!({ "enrollment_token": *enroll, "name": format!("machine-{i:05}") }),
                )
                .await
                else {
                    return false;
                };
                let (Some(id), Some(tok)) =
                    (v["endpoint"]["id"].as_str(), v["access_token"].as_str())
                else {
                    return false;
                };
                if let Ok(mut m) = machines[i].lock() {
                    *m = (id.to_owned(), tok.to_owned());
                }
                true
            }
        }
    })
    .await;
    let machines: Arc<Vec<(String, String)>> = Arc::new(
        machines
            .iter()
            .map(|m| m.lock().map(|m| m.clone()).unwrap_or_default())
            .collect(),
    );
    eprintln!(
        "registered {} machines in {:.1?} ({failed} failed)",
        a.machines,
        t.elapsed()
    );
    let states: Arc<Vec<(String, Bytes)>> = Arc::new(
        (0..a.distinct)
            .map(|k| full_body(&make_state(a.packages, k + 1)))
            .collect(),
    );
    let t = Instant::now();
    let failed = run_all(a.concurrency, a.machines, {
        let (client, base, machines, states) = (
            client.clone(),
            base.clone(),
            machines.clone(),
            states.clone(),
        );
        move |i| {
            let (client, base, machines, states) = (
                client.clone(),
                base.clone(),
                machines.clone(),
                states.clone(),
            );
            async move {
                let (id, tok) = &machines[i];
                let (hash, pkgs) = &states[i % states.len()];
                put_state(&client, &base, id, tok, hash, pkgs).await
            }
        }
    })
    .await;
    eprintln!("first reports in {:.1?} ({failed} failed)", t.elapsed());
    note_rss(&server, "setup");
    let (id0, _) = &machines[0];
    json_post(
        &client,
        format!("{base}/api/endpoints/{id0}/set-latest"),
        Some(&admin),
        json!({}),
    )
    .await?;

    let mut lines = vec![
        format!(
            "{} — {} machines, {} packages per state, concurrency {}, {} s per figure",
            a.backend, a.machines, a.packages, a.concurrency, a.seconds
        ),
        String::new(),
        "| what | rate | p50 | p99 | requests | failed |".into(),
        "|---|---|---|---|---|---|".into(),
    ];

    // Unchanged reports: the hash each machine already reported.
    let mut added = Vec::new();
    if want("unchanged") {
        let before = count_rows(&server).await?;
        let mut o = drive(a.concurrency, a.seconds, {
            let (client, base, machines, states) = (
                client.clone(),
                base.clone(),
                machines.clone(),
                states.clone(),
            );
            move |i| {
                let (client, base, machines, states) = (
                    client.clone(),
                    base.clone(),
                    machines.clone(),
                    states.clone(),
                );
                async move {
                    let m = (i * 7919) % machines.len();
                    let (id, tok) = &machines[m];
                    let (hash, _) = &states[m % states.len()];
                    client
                        .put(format!("{base}/api/endpoints/{id}/state"))
                        .bearer_auth(tok)
                        .json(&json!({ "hash": hash }))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
                }
            }
        })
        .await;
        lines.push(o.line("unchanged-state report"));
        note_rss(&server, "unchanged-state report");
        let after = count_rows(&server).await?;
        added = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, a)| format!("{} +{}", b.0, a.1 - b.1))
            .collect();
    }

    // Changed reports to a state the server has (a fleet upgrading to what
    // another machine already reported): hash only, new history row.
    if want("known") {
        let mut o = drive(a.concurrency, a.seconds, {
            let (client, base, machines, states) = (
                client.clone(),
                base.clone(),
                machines.clone(),
                states.clone(),
            );
            move |i| {
                let (client, base, machines, states) = (
                    client.clone(),
                    base.clone(),
                    machines.clone(),
                    states.clone(),
                );
                async move {
                    let m = (i * 7919) % machines.len();
                    let (id, tok) = &machines[m];
                    // Round r moves machine m to the state after its current one.
                    let round = i / machines.len() + 1;
                    let (hash, pkgs) = &states[(m + round) % states.len()];
                    put_state(&client, &base, id, tok, hash, pkgs).await
                }
            }
        })
        .await;
        lines.push(o.line("changed-state report, known content"));
        note_rss(&server, "changed-state report, known content");
    }

    // Changed reports with a content nobody reported before: hash (409),
    // then the full state. The bodies are made beforehand, so the figure
    // is the server's and not the generator's JSON encoder's.
    if want("new") {
        let t = Instant::now();
        let fresh: Arc<Vec<(String, Bytes)>> = Arc::new(
            (0..(a.seconds as usize * 500).max(100))
                .map(|i| full_body(&make_state(a.packages, a.distinct + 1 + i)))
                .collect(),
        );
        eprintln!("made {} new states in {:.1?}", fresh.len(), t.elapsed());
        let mut o = drive(a.concurrency, a.seconds, {
            let (client, base, machines) = (client.clone(), base.clone(), machines.clone());
            move |i| {
                let (client, base, machines, fresh) = (
                    client.clone(),
                    base.clone(),
                    machines.clone(),
                    fresh.clone(),
                );
                async move {
                    let m = (i * 7919) % machines.len();
                    let (id, tok) = &machines[m];
                    let Some((hash, body)) = fresh.get(i) else {
                        return false;
                    };
                    put_state(&client, &base, id, tok, hash, body).await
                }
            }
        })
        .await;
        lines.push(o.line("changed-state report, new content uploaded"));
        note_rss(&server, "changed-state report, new content uploaded");
    }

    // The machine list, 200 a page.
    if want("list") {
        let mut o = drive(a.concurrency, a.seconds, {
            let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
            let pages = a.machines.div_ceil(200);
            move |i| {
                let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
                async move {
                    let Ok(r) = client
                        .get(format!(
                            "{base}/api/endpoints?per_page=200&page={}",
                            i % pages + 1
                        ))
                        .bearer_auth(&*admin)
                        .send()
                        .await
                    else {
                        return false;
                    };
                    // Read to the end, so the connection goes back to the pool.
                    r.status() == StatusCode::OK && r.bytes().await.is_ok()
                }
            }
        })
        .await;
        lines.push(o.line("GET /api/endpoints (200 per page)"));
        note_rss(&server, "GET /api/endpoints (200 per page)");
    }

    let (rss, hwm) = server.rss_kib();
    let size = db_size(&server).await?;
    lines.push(String::new());
    lines.push(format!(
        "server RSS at the end {:.1} MiB (peak {:.1} MiB); database {:.1} MiB; rows added by unchanged reports: {}",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        size as f64 / (1024.0 * 1024.0),
        if added.is_empty() { "none".to_owned() } else { added.join(", ") }
    ));
    println!("{}", lines.join("\n"));
    Ok(())
}
