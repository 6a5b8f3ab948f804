//! The package archive's benchmark (figures in docs/benchmarks.md, "Archive
//! (issue 9)"). A server in this process on SQLite; real `.pkg.tar.zst`
//! files (a `.PKGINFO` and an incompressible payload of 1–32 KiB) for a
//! pool of `--packages` packages; `--targets` targets, each made by a
//! machine's report and set-latest, every one the one before with
//! `--changed` packages upgraded. Every file of every target is uploaded
//! (`PUT /api/archive/packages`, `--concurrency` at a time); then it prints
//! the disk used under `objects/` against one target's files and the sum of
//! all targets, the time to publish a target's repository database
//! (`GET /repo/…/pacsync.db`, generated per request) and the package files
//! served per second (`GET /repo/…/FILE`, re-hashed before they are sent).
//!
//! cargo bench -p pacsync-server --bench archive -- [--packages 1500]
//!     [--targets 10] [--changed 75] [--concurrency 16] [--seconds 10]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use pacsync_core::package::{InstallReason, Package};
use pacsync_core::state::PackageState;
use pacsync_server::auth::Role;
use pacsync_tests::{PackageSpec, noise};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

#[derive(Debug)]
struct Args {
    packages: usize,
    targets: usize,
    changed: usize,
    concurrency: usize,
    seconds: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        packages: 1500,
        targets: 10,
        changed: 75,
        concurrency: 16,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("flag without value");
        match flag.as_str() {
            "--packages" => a.packages = value()?.parse()?,
            "--targets" => a.targets = value()?.parse()?,
            "--changed" => a.changed = value()?.parse()?,
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            _ => {}
        }
    }
    Ok(a)
}

/// The version of package `i` in target `t`: each target upgrades the
/// `changed` packages after the ones the target before upgraded.
fn version(i: usize, t: usize, a: &Args) -> String {
    let bumps = (1..=t)
        .filter(|k| {
            let start = ((k - 1) * a.changed) % a.packages;
            (i + a.packages - start) % a.packages < a.changed
        })
        .count();
    format!("1.{bumps}-1")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("archive");
    let built = dir.path().join("built");
    std::fs::create_dir_all(&built)?;

    // The package files: every (name, version) any target has, built once.
    let started = Instant::now();
    let targets: Vec<Vec<(String, String)>> = (0..a.targets)
        .map(|t| {
            (0..a.packages)
                .map(|i| (format!("package-{i:04}"), version(i, t, &a)))
                .collect()
        })
        .collect();
    let mut files: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for (t, target) in targets.iter().enumerate() {
        for (i, (name, v)) in target.iter().enumerate() {
            if files.contains_key(&(name.clone(), v.clone())) {
                continue;
            }
            let len = 1024 * (1 + (i * 37 + t) % 32);
            let spec = PackageSpec::new(name.as_str(), v.as_str())
                .arch("x86_64")
                .file(
                    format!("usr/share/{name}/data"),
                    noise(len, (i * 131 + t) as u64),
                );
            let path = spec.build(&built)?;
            files.insert((name.clone(), v.clone()), std::fs::read(&path)?);
            std::fs::remove_file(path)?;
        }
    }
    let one_target: u64 = targets[0].iter().map(|k| files[k].len() as u64).sum();
    let all_targets: u64 = targets
        .iter()
        .flat_map(|t| t.iter().map(|k| files[k].len() as u64))
        .sum();
    let unique: u64 = files.values().map(|f| f.len() as u64).sum();
    println!(
        "{} targets of {} packages, {} upgraded per target: {} distinct files built in {:.1} s",
        a.targets,
        a.packages,
        a.changed,
        files.len(),
        started.elapsed().as_secs_f64()
    );

    // The server, in this process.
    let data = dir.path().display().to_string();
    let archive_dir = archive.display().to_string();
    let vars: BTreeMap<&str, &str> = [
        ("PACSYNC_DATA_DIR", data.as_str()),
        ("ARCHIVE_DIR", archive_dir.as_str()),
        (
            "JWT_SECRET_KEY",
            "bench-secret-bench-secret-bench-secret-0123",
        ),
        ("API_RATE_LIMIT", "0"),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .collect();
    let settings =
        pacsync_server::Settings::from_sources(None, |k| vars.get(k).map(|v| (*v).to_owned()))?;
    let server = pacsync_server::Server::prepare(settings).await?;
    let store = server.store().clone();
    tokio::task::spawn_blocking(move || {
        pacsync_server::admin::create_user(&store, "admin", Role::Admin, PASSWORD)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let call = |method: reqwest::Method, path: String, token: Option<String>, body: Value| {
        let req = client.request(method, format!("{base}{path}")).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let r = req.send().await?;
            let st = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(st.is_success(), "{st}: {v}");
            anyhow::Ok(v)
        }
    };
    use reqwest::Method;
    let login = call(
        Method::POST,
        "/api/auth/login".into(),
        None,
        json!({ "username": "admin", "password": PASSWORD }),
    )
    .await?;
    let admin = login["access_token"].as_str().context("token")?.to_owned();
    let pool = call(
        Method::POST,
        "/api/pools".into(),
        Some(admin.clone()),
        json!({ "name": "bench" }),
    )
    .await?;
    let pool_id = pool["id"].as_str().context("pool id")?.to_owned();
    let enroll = call(
        Method::POST,
        "/api/enrollment-tokens".into(),
        Some(admin.clone()),
        json!({ "pool": pool_id }),
    )
    .await?;
    let machine = call(
        Method::POST,
        "/api/endpoints/register".into(),
        None,
        json!({ "enrollment_token": enroll["token"], "name": "m" }),
    )
    .await?;
    let m_id = machine["endpoint"]["id"].as_str().context("id")?.to_owned();
    let m_token = machine["access_token"]
        .as_str()
        .context("token")?
        .to_owned();

    // Targets: report, set-latest, upload the target's files.
    let uploaded = Arc::new(AtomicU64::new(0));
    let mut upload_time = Duration::ZERO;
    let mut target_ids = Vec::new();
    for target in &targets {
        let state: PackageState = target
            .iter()
            .map(|(name, v)| Package {
                name: name.clone(),
                version: v.as_str().into(),
                arch: "x86_64".into(),
                reason: InstallReason::Explicit,
                origin: None,
                installed_size: 0,
                depends: Vec::new(),
            })
            .collect();
        let hash = state.content_hash().to_string();
        call(
            Method::PUT,
            format!("/api/endpoints/{m_id}/state"),
            Some(m_token.clone()),
            json!({ "hash": hash, "packages": state }),
        )
        .await?;
        let t = call(
            Method::POST,
            format!("/api/endpoints/{m_id}/set-latest"),
            Some(m_token.clone()),
            json!({}),
        )
        .await?;
        target_ids.push(t["id"].as_str().context("target id")?.to_owned());
        let begin = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(target.iter())
            .map(|key| {
                let body = files[key].clone();
                let (client, base, token, uploaded) =
                    (&client, &base, m_token.clone(), uploaded.clone());
                async move {
                    let r = client
                        .put(format!("{base}/api/archive/packages"))
                        .bearer_auth(token)
                        .body(body)
                        .send()
                        .await?;
                    let st = r.status();
                    anyhow::ensure!(st == StatusCode::CREATED || st == StatusCode::OK, "{st}");
                    uploaded.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
            .buffer_unordered(a.concurrency)
            .collect()
            .await;
        upload_time += begin.elapsed();
        results.into_iter().collect::<anyhow::Result<()>>()?;
    }
    let n_uploads = uploaded.load(Ordering::Relaxed);
    println!(
        "uploads: {n_uploads} files ({:.1} MiB) in {:.1} s, {:.0} files/s",
        mib(all_targets),
        upload_time.as_secs_f64(),
        n_uploads as f64 / upload_time.as_secs_f64()
    );

    // Disk: what is under objects/ (allocated blocks and file sizes).
    let (mut count, mut bytes, mut blocks) = (0u64, 0u64, 0u64);
    walk(&archive.join("objects"), &mut |m| {
        count += 1;
        bytes += m.len();
        blocks += m.blocks() * 512;
    })?;
    println!(
        "one target's files: {:.1} MiB; sum of the {} targets: {:.1} MiB; distinct files: {:.1} MiB",
        mib(one_target),
        a.targets,
        mib(all_targets),
        mib(unique)
    );
    println!(
        "objects/: {count} files, {:.1} MiB of content, {:.1} MiB on disk = {:.2}x one target, {:.3}x the sum of the targets, {:.3}x the distinct files",
        mib(bytes),
        mib(blocks),
        blocks as f64 / one_target as f64,
        blocks as f64 / all_targets as f64,
        blocks as f64 / unique as f64
    );
    let db = std::fs::metadata(dir.path().join("pacsync.db")).map_or(0, |m| m.len());
    println!("database file: {:.1} MiB", mib(db));

    // Publishing a target's repository: the database, generated per request.
    let mut publish = Vec::new();
    for round in 0..30 {
        let target = &target_ids[round % target_ids.len()];
        let begin = Instant::now();
        let r = client
            .get(format!(
                "{base}/repo/{pool_id}/{target}/pacsync/os/x86_64/pacsync.db"
            ))
            .send()
            .await?;
        anyhow::ensure!(r.status() == StatusCode::OK, "{}", r.status());
        let body = r.bytes().await?;
        publish.push(begin.elapsed());
        if round == 0 {
            let entries = pacsync_core::syncdb::parse_sync_db(&body)?;
            anyhow::ensure!(entries.len() == a.packages, "{} entries", entries.len());
            println!(
                "repository database of a target: {} packages, {:.0} KiB",
                entries.len(),
                body.len() as f64 / 1024.0
            );
        }
    }
    publish.sort();
    println!(
        "publish (GET pacsync.db): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {}",
        ms(publish[publish.len() / 2]),
        ms(publish[publish.len() * 99 / 100]),
        ms(publish[publish.len() - 1]),
        publish.len()
    );

    // Files served: GET /repo/…/current/…/FILE at the given concurrency.
    let names: Vec<String> = targets[a.targets - 1]
        .iter()
        .map(|(n, v)| format!("{n}-{v}-x86_64.pkg.tar.zst"))
        .collect();
    let served = Arc::new(AtomicU64::new(0));
    let served_bytes = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let begin = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (client, names, served, served_bytes) = (
            client.clone(),
            names.clone(),
            served.clone(),
            served_bytes.clone(),
        );
        let url = format!("{base}/repo/{pool_id}/current/pacsync/os/x86_64/");
        workers.push(tokio::spawn(async move {
            let mut i = w * 97;
            while Instant::now() < end {
                let r = client
                    .get(format!("{url}{}", names[i % names.len()]))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == StatusCode::OK, "{}", r.status());
                let n = r.bytes().await?.len() as u64;
                served.fetch_add(1, Ordering::Relaxed);
                served_bytes.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let secs = begin.elapsed().as_secs_f64();
    let n = served.load(Ordering::Relaxed);
    println!(
        "served (GET package files, concurrency {}): {n} files in {secs:.1} s = {:.0} files/s, {:.1} MiB/s",
        a.concurrency,
        n as f64 / secs,
        mib(served_bytes.load(Ordering::Relaxed)) / secs
    );

    let _ = stop.send(());
    serving.await??;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn walk(dir: &Path, f: &mut dyn FnMut(&std::fs::Metadata)) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            walk(&e.path(), f)?;
        } else {
            f(&m);
        }
    }
    Ok(())
}
