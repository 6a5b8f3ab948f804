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

#[path = "../../tests/api/pg.rs"]
#[allow(dead_code, missing_debug_implementations, clippy::unwrap_used)]
mod pg;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::body::Bytes;
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

mod drive;
mod server;
mod states;

use drive::{drive, run_all};
use server::{PASSWORD, count_rows, db_size, note_rss, start};
use states::{full_body, make_state};

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
        let mut o = drive(a.concurrency, a.seconds, usize::MAX, {
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
        let mut o = drive(a.concurrency, a.seconds, usize::MAX, {
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
    // is the server's and not the generator's JSON encoder's: 1,500 for
    // each second of the figure; should they all be sent sooner, the
    // figure ends there and its rate is over the time they took.
    if want("new") {
        let t = Instant::now();
        let fresh: Arc<Vec<(String, Bytes)>> = Arc::new(
            (0..(a.seconds as usize * 1500).max(100))
                .map(|i| full_body(&make_state(a.packages, a.distinct + 1 + i)))
                .collect(),
        );
        eprintln!("made {} new states in {:.1?}", fresh.len(), t.elapsed());
        let mut o = drive(a.concurrency, a.seconds, fresh.len(), {
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
        let mut o = drive(a.concurrency, a.seconds, usize::MAX, {
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
