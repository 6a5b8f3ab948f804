//! Fleet simulator (issue 6; figures in docs/benchmarks.md): N simulated
//! machines against the release `pacsync-server` on SQLite or a throwaway
//! PostgreSQL, for scale and soak runs. Each machine enrolls, holds the push
//! channel (`/api/ws`) open as pacsyncd does — N machines are N concurrent
//! WebSocket connections — reports its state (states made from the real
//! Arch databases in the fixtures) every `--report-every` seconds with
//! jitter, changes now and then, and carries out the syncs an admin
//! requests. An admin sets a new target every `--target-every` seconds and
//! the simulator measures how long the push takes to reach the last
//! connected machine.
//!
//! At the end it checks every machine's last acknowledged report against
//! the server (a mismatch is a lost report) and prints errors, latency
//! percentiles, the server's RSS and the database size.
//!
//! cargo bench -p pacsync-server --bench fleet -- [--backend sqlite|postgres]
//!     [--machines 10000] [--seconds 600] [--report-every 60]
//!     [--target-every 60] [--sync-every 5] [--profiles 40] [--change 0.05]
//!     [--fixtures DIR]
//!
//! Needs an open-file limit above twice the machines for the two processes
//! together: each has one descriptor per connection (`ulimit -n`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../tests/api/pg.rs"]
#[allow(dead_code, missing_debug_implementations, clippy::unwrap_used)]
mod pg;

#[path = "../load/server.rs"]
#[allow(dead_code, missing_debug_implementations)]
mod server;

/// Report bodies made the load benchmark's way.
#[path = "../load/states.rs"]
#[allow(dead_code)]
mod states;

mod machine;
mod profiles;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use profiles::{Report, Rng, Universe};
use stats::{Fleet, Kind, ms, pct};

#[derive(Debug, Clone)]
struct Args {
    backend: String,
    machines: usize,
    seconds: u64,
    report_every: u64,
    target_every: u64,
    sync_every: u64,
    profiles: usize,
    change: f64,
    fixtures: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        backend: "sqlite".into(),
        machines: 10_000,
        seconds: 600,
        report_every: 60,
        target_every: 60,
        sync_every: 5,
        profiles: 40,
        change: 0.05,
        fixtures: std::env::var_os("PACSYNC_FIXTURES").map_or_else(
            || PathBuf::from("/work/shared/fixtures/arch-2019"),
            PathBuf::from,
        ),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("flag without value");
        match flag.as_str() {
            "--backend" => a.backend = value()?,
            "--machines" => a.machines = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--report-every" => a.report_every = value()?.parse()?,
            "--target-every" => a.target_every = value()?.parse()?,
            "--sync-every" => a.sync_every = value()?.parse()?,
            "--profiles" => a.profiles = value()?.parse()?,
            "--change" => a.change = value()?.parse()?,
            "--fixtures" => a.fixtures = value()?.into(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    Ok(a)
}

/// The soft open-file limit (from /proc: no unsafe `getrlimit`).
fn open_file_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut r = client.post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The admin's side of the run: a new target every `target_every`, a sync
/// request every `sync_every`, until the deadline.
async fn administer(fleet: Arc<Fleet>, admin: String, a: Args, deadline: tokio::time::Instant) {
    let mut rng = Rng::new(4242);
    let start = tokio::time::Instant::now();
    let mut next_target = start + Duration::from_secs(a.target_every.min(30));
    let mut next_sync = next_target + Duration::from_secs(a.sync_every);
    let mut have_target = false;
    loop {
        let next = next_target.min(next_sync);
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
        let ids = fleet.ids.lock().map(|i| i.clone()).unwrap_or_default();
        if ids.is_empty() {
            next_target += Duration::from_secs(1);
            continue;
        }
        let id = &ids[rng.below(ids.len())];
        if next == next_target {
            next_target += Duration::from_secs(a.target_every);
            let t = Instant::now();
            let connected = fleet.connected.load(Ordering::Relaxed);
            match post(
                &fleet.client,
                format!("{}/api/endpoints/{id}/set-latest", fleet.base),
                Some(&admin),
                json!({ "comment": "fleet simulator" }),
            )
            .await
            {
                Ok(v) => {
                    fleet.latency(Kind::SetLatest, t.elapsed());
                    if let Some(target) = v["id"].as_str() {
                        fleet.target_set(target, t, connected);
                    }
                    have_target = true;
                }
                // A machine that has not reported yet has nothing to offer.
                Err(e) if e.to_string().contains("no_state") => {}
                Err(e) => fleet.error(Kind::SetLatest, &format!("{e:#}")),
            }
        } else {
            next_sync += Duration::from_secs(a.sync_every);
            if !have_target {
                continue;
            }
            let t = Instant::now();
            match post(
                &fleet.client,
                format!("{}/api/endpoints/{id}/sync", fleet.base),
                Some(&admin),
                json!({}),
            )
            .await
            {
                Ok(op) => {
                    fleet.latency(Kind::RequestSync, t.elapsed());
                    let fleet = fleet.clone();
                    let admin = admin.clone();
                    tokio::spawn(async move { follow(fleet, admin, op, t).await });
                }
                Err(e) if e.to_string().contains("operation_in_progress") => {}
                Err(e) => fleet.error(Kind::RequestSync, &format!("{e:#}")),
            }
        }
    }
}

/// How long an admin watches a requested sync before calling it lost: a
/// person waits minutes for a machine, not seconds.
const FOLLOW_FOR: Duration = Duration::from_secs(300);

/// Poll an operation an admin requested until the machine finished it.
/// A poll that fails is an error (the server's), not a reason to stop.
async fn follow(fleet: Arc<Fleet>, admin: String, op: Value, t: Instant) {
    let Some(id) = op["id"].as_str() else { return };
    let url = format!("{}/api/operations/{id}", fleet.base);
    while t.elapsed() < FOLLOW_FOR {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v = match fleet.client.get(&url).bearer_auth(&admin).send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await,
            Ok(r) => {
                return fleet.error(Kind::OperationDone, &format!("poll {}", r.status()));
            }
            Err(e) => Err(e),
        };
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                return fleet.error(Kind::OperationDone, &format!("poll: {e}"));
            }
        };
        match v["status"].as_str() {
            Some("succeeded") => return fleet.latency(Kind::OperationDone, t.elapsed()),
            Some("failed" | "cancelled") => {
                return fleet.error(Kind::OperationDone, &format!("operation {}", v["status"]));
            }
            _ => {}
        }
    }
    fleet.error(Kind::OperationDone, "not finished within 5 minutes");
}

/// Each endpoint's state hash on the server, by id.
async fn server_hashes(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for page in 1.. {
        let v: Value = client
            .get(format!("{base}/api/endpoints?per_page=500&page={page}"))
            .bearer_auth(admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let items = v["items"].as_array().context("items")?;
        for e in items {
            if let (Some(id), Some(h)) = (e["id"].as_str(), e["state_hash"].as_str()) {
                out.insert(id.to_owned(), h.to_owned());
            }
        }
        if items.len() < 500 {
            break;
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    eprintln!("{a:?}");
    let limit = open_file_limit().unwrap_or(0);
    if limit < a.machines as u64 + 512 {
        bail!(
            "the open-file limit is {limit}: {} machines need at least {} (ulimit -n)",
            a.machines,
            a.machines + 512
        );
    }
    let universe = Arc::new(Universe::load(&a.fixtures)?);
    let profiles: Vec<Report> = (0..a.profiles)
        .map(|k| Report::of(&universe.profile(k as u64)))
        .collect();
    let server = server::start(&a.backend)?;
    eprintln!("server pid {} at {}", server.child.id(), server.base);
    // The server closes a keep-alive connection idle for 30 s; a client
    // that reuses one about then may send its request into the closing
    // connection, so idle connections are dropped sooner (as pacsyncd does).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(20))
        .build()?;
    let base = server.base.clone();
    let login = post(
        &client,
        format!("{base}/api/auth/login"),
        None,
        json!({ "username": "admin", "password": server::PASSWORD }),
    )
    .await?;
    let admin = login["access_token"].as_str().context("login")?.to_owned();
    let pool = post(
        &client,
        format!("{base}/api/pools"),
        Some(&admin),
        json!({ "name": "fleet", "auto_sync": true }),
    )
    .await?;
    let pool_id = pool["id"].as_str().context("pool id")?.to_owned();
    let enroll = post(
        &client,
        format!("{base}/api/enrollment-tokens"),
        Some(&admin),
        json!({ "pool": pool_id }),
    )
    .await?;
    let fleet = Arc::new(Fleet::new(
        base.clone(),
        client.clone(),
        enroll["token"].as_str().context("token")?.to_owned(),
        profiles,
        Duration::from_secs(a.report_every),
        a.change,
    ));

    // Machines join over a ramp, as a fleet switched on does not all
    // enroll in the same millisecond.
    let started = tokio::time::Instant::now();
    let ramp = Duration::from_secs_f64((a.machines as f64 / 200.0).max(1.0));
    let deadline = started + ramp + Duration::from_secs(a.seconds);
    let mut handles = Vec::with_capacity(a.machines);
    for i in 0..a.machines {
        let (fleet, universe) = (fleet.clone(), universe.clone());
        let at = started + ramp.mul_f64(i as f64 / a.machines as f64);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            machine::run(fleet, universe, i).await
        }));
    }
    let admin_task = tokio::spawn(administer(
        fleet.clone(),
        admin.clone(),
        a.clone(),
        deadline,
    ));

    let mut peak_connected = 0;
    let mut rss_all_connected = None;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let connected = fleet.connected.load(Ordering::Relaxed);
        peak_connected = peak_connected.max(connected);
        let (rss, hwm) = server.rss_kib();
        if connected >= a.machines && rss_all_connected.is_none() {
            rss_all_connected = Some(rss);
        }
        eprintln!(
            "{:>5.0} s: {connected} connected, {} requests, {} errors, server RSS {:.1} MiB (peak {:.1})",
            started.elapsed().as_secs_f64(),
            fleet.requests(),
            fleet.errors(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    let _ = admin_task.await;
    let (rss_end, hwm) = server.rss_kib();
    let _ = fleet.stop.send(true);
    let mut outcomes = Vec::with_capacity(handles.len());
    for h in handles {
        outcomes.push(h.await.unwrap_or_default());
    }
    // Operations still being followed finish within their own deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let on_server = server_hashes(&client, &base, &admin).await?;
    let enrolled = outcomes.iter().filter(|o| !o.id.is_empty()).count();
    let acked = outcomes.iter().filter(|o| o.acked.is_some()).count();
    let lost = outcomes
        .iter()
        .filter(|o| {
            o.acked
                .as_ref()
                .is_some_and(|h| on_server.get(&o.id) != Some(h))
        })
        .count();
    let size = server::db_size(&server).await?;

    let mut lines = vec![
        format!(
            "{} — {} machines for {} s (+{:.0} s ramp), a report every {} s ± 50%, {} profiles, change {:.0}%, a target every {} s, a sync request every {} s",
            a.backend,
            a.machines,
            a.seconds,
            ramp.as_secs_f64(),
            a.report_every,
            a.profiles,
            a.change * 100.0,
            a.target_every,
            a.sync_every
        ),
        String::new(),
    ];
    lines.extend(fleet.table());
    lines.push(String::new());
    lines.push("| new target | machines connected | reached | p50 | p99 | last |".into());
    lines.push("|---|---:|---:|---:|---:|---:|".into());
    for (n, run) in fleet.take_targets().iter().enumerate() {
        let d = run.delays();
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} |",
            n + 1,
            run.connected,
            d.len(),
            ms(pct(&d, 0.5)),
            ms(pct(&d, 0.99)),
            ms(d.last().copied().unwrap_or_default())
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "enrolled {enrolled}/{}; peak connections {peak_connected}; disconnects {}, reconnects {}, token renewals {}; errors {}; machines with an acknowledged report {acked}, lost reports {lost}",
        a.machines,
        fleet.disconnects.load(Ordering::Relaxed),
        fleet.reconnects.load(Ordering::Relaxed),
        fleet.renewals.load(Ordering::Relaxed),
        fleet.errors(),
    ));
    lines.push(format!(
        "server RSS with all connected {}, at the end {:.1} MiB, peak {:.1} MiB; database {:.1} MiB",
        rss_all_connected.map_or("—".to_owned(), |r| format!("{:.1} MiB", r as f64 / 1024.0)),
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0,
        size as f64 / (1024.0 * 1024.0)
    ));
    println!("{}", lines.join("\n"));
    Ok(())
}
