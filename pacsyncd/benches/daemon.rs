//! pacsyncd's figures for docs/benchmarks.md, measured on a real daemon
//! (private system bus with polkitd, sandboxed pacman root, a real
//! pacsync-server):
//!
//! - reading the `Status` property over D-Bus (p50/p99),
//! - idle resident memory (VmRSS),
//! - end of a manual pacman transaction → `PropertiesChanged(Status)`,
//! - a sync's wall time against the bare pacman commands of the same change.
//!
//! `cargo build --release -p pacsync-server && cargo bench -p pacsyncd --bench daemon`
//! (as root, with pacman, dbus-daemon and polkitd installed).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::server_process::{ServerProcess, sibling_binary};
use pacsync_tests::system_bus::SystemBus;
use pacsync_tests::{PackageSpec, Repo, Sandbox, ScratchDir, require_pacman_sandbox};
use zbus::Connection;
use zbus::zvariant::OwnedValue;

const DAEMON: &str = env!("CARGO_BIN_EXE_pacsyncd");
const STATUS_READS: usize = 2000;
const MANUAL_ROUNDS: usize = 20;
const SYNC_ROUNDS: usize = 5;

fn spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec::new(name, version).file(format!("usr/share/{name}/version"), version.as_bytes())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmRSS")
}

async fn status(conn: &Connection) -> anyhow::Result<String> {
    let reply = conn
        .call_method(
            Some(pacsync_dbus::BUS_NAME),
            pacsync_dbus::OBJECT_PATH,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(pacsync_dbus::INTERFACE, "Status"),
        )
        .await?;
    let value: OwnedValue = reply.body().deserialize()?;
    Ok(String::try_from(value)?)
}

async fn wait_status(conn: &Connection, want: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(conn).await? != want {
        if Instant::now() > deadline {
            bail!("status never became {want}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The pacman command lines the daemon logged after byte `from` of its
/// log, without the dry run (`--print`) it makes before changing anything.
fn pacman_commands(home: &DaemonHome, from: usize) -> Vec<Vec<String>> {
    home.log()[from..]
        .lines()
        .filter(|l| l.contains("running pacman") && !l.contains("--print"))
        .filter_map(|l| l.split("command=").nth(1))
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn run_bare(commands: &[Vec<String>]) -> anyhow::Result<()> {
    for c in commands {
        let out = std::process::Command::new(&c[0])
            .args(&c[1..])
            .env("LC_ALL", "C")
            .output()?;
        if !out.status.success() {
            bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

/// Call `method` and wait for its OperationFinished; returns the wall time.
async fn operation(conn: &Connection, method: &str) -> anyhow::Result<Duration> {
    let proxy = zbus::Proxy::new(
        conn,
        pacsync_dbus::BUS_NAME,
        pacsync_dbus::OBJECT_PATH,
        pacsync_dbus::INTERFACE,
    )
    .await?;
    let mut finished = proxy.receive_signal("OperationFinished").await?;
    let start = Instant::now();
    let id: String = proxy.call(method, &()).await?;
    while let Some(signal) = finished.next().await {
        let (op, _kind, outcome, message): (String, String, String, String) =
            signal.body().deserialize()?;
        if op == id {
            if outcome != "succeeded" {
                bail!("{method}: {outcome}: {message}");
            }
            return Ok(start.elapsed());
        }
    }
    bail!("the signal stream ended")
}

fn main() -> anyhow::Result<()> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return Ok(());
    }
    let repo = Repo::new("test")?;
    repo.add(&[
        spec("alpha", "2.0-1"),
        spec("beta", "2.0-1"),
        spec("gamma", "1.0-1"),
        spec("delta", "1.0-1"),
    ])?;
    let files = ScratchDir::new("old-packages")?;
    let alpha1 = spec("alpha", "1.0-1").build(files.path())?;
    let beta1 = spec("beta", "1.0-1").build(files.path())?;
    let sandbox = Sandbox::new(&[&repo])?;
    sandbox.sync_dbs()?;
    sandbox.install_files(&[&alpha1])?;
    sandbox.install(&["beta", "delta"])?;
    for f in [&alpha1, &beta1] {
        std::fs::copy(f, sandbox.cache_dir().join(f.file_name().context("name")?))?;
    }
    let bus = SystemBus::start()?;
    let server = ServerProcess::start(&sibling_binary(DAEMON, "pacsync-server"))?;
    let admin = server.admin_client()?;
    let (_pool, token) = admin.pool_with_token("bench")?;
    let home = DaemonHome::new(&sandbox)?;
    let daemon = DaemonProcess::start(Path::new(DAEMON), &bus, &home)?;
    let rss_start = vm_rss_kib(daemon.pid())?;
    let out = bus.call_daemon(None, "Register", &[&server.url(), &token, "bench"])?;
    if !out.status.success() {
        bail!("register: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The target: alpha upgraded, beta downgraded, gamma installed as a
    // dependency, delta removed.
    let reference = admin.register_machine(&token, "reference")?;
    reference.report(&[
        ("alpha", "2.0-1", true),
        ("beta", "1.0-1", true),
        ("gamma", "1.0-1", false),
    ])?;
    reference.set_latest("bench")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address())?
            .build()
            .await?;
        wait_status(&conn, "diverged").await?;

        // Idle after start and registration.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_idle = vm_rss_kib(daemon.pid())?;

        let mut reads = Vec::with_capacity(STATUS_READS);
        for _ in 0..STATUS_READS {
            let t = Instant::now();
            status(&conn).await?;
            reads.push(t.elapsed());
        }
        reads.sort();

        let mut daemon_times = Vec::new();
        let mut bare_times = Vec::new();
        for _ in 0..SYNC_ROUNDS {
            let mark = home.log().len();
            daemon_times.push(operation(&conn, "Sync").await?);
            let sync_commands = pacman_commands(&home, mark);
            let mark = home.log().len();
            operation(&conn, "Revert").await?;
            let revert_commands = pacman_commands(&home, mark);
            wait_status(&conn, "diverged").await?;
            let t = Instant::now();
            run_bare(&sync_commands)?;
            bare_times.push(t.elapsed());
            wait_status(&conn, "in_sync").await?;
            run_bare(&revert_commands)?;
            wait_status(&conn, "diverged").await?;
        }
        daemon_times.sort();
        bare_times.sort();

        // In sync, then delta installed and removed by hand.
        operation(&conn, "Sync").await?;
        wait_status(&conn, "in_sync").await?;
        let proxy = zbus::fdo::PropertiesProxy::builder(&conn)
            .destination(pacsync_dbus::BUS_NAME)?
            .path(pacsync_dbus::OBJECT_PATH)?
            .build()
            .await?;
        let mut changes = proxy.receive_properties_changed().await?;
        let mut latencies = Vec::new();
        for round in 0..MANUAL_ROUNDS * 2 {
            let (args, want): (&[&str], &str) = if round % 2 == 0 {
                (&["-S", "delta"], "ahead")
            } else {
                (&["-R", "delta"], "in_sync")
            };
            let out = tokio::process::Command::from(sandbox.pacman_command())
                .args(args)
                .output()
                .await?;
            let ended = Instant::now();
            if !out.status.success() {
                bail!("pacman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            loop {
                let signal = tokio::time::timeout(Duration::from_secs(10), changes.next())
                    .await?
                    .context("signal stream ended")?;
                let a = signal.args()?;
                let moved = a
                    .changed_properties()
                    .get("Status")
                    .and_then(|v| <&str>::try_from(v).ok())
                    == Some(want);
                if moved {
                    // pacman may release its lock a moment before it exits.
                    latencies.push(ended.elapsed());
                    break;
                }
            }
        }
        latencies.sort();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_after = vm_rss_kib(daemon.pid())?;

        println!("pacsyncd benchmarks");
        println!(
            "Status read over D-Bus ({STATUS_READS}): p50 {}  p99 {}  max {}",
            ms(percentile(&reads, 0.5)),
            ms(percentile(&reads, 0.99)),
            ms(reads[reads.len() - 1])
        );
        println!(
            "VmRSS: at start {:.1} MiB, idle after registering {:.1} MiB, idle after {} syncs and {} manual transactions {:.1} MiB",
            rss_start as f64 / 1024.0,
            rss_idle as f64 / 1024.0,
            SYNC_ROUNDS * 2 + 1,
            MANUAL_ROUNDS * 2,
            rss_after as f64 / 1024.0
        );
        println!(
            "manual transaction end → PropertiesChanged(Status) ({}): p50 {}  p99 {}  max {}",
            latencies.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[latencies.len() - 1])
        );
        let d = percentile(&daemon_times, 0.5);
        let b = percentile(&bare_times, 0.5);
        println!(
            "sync (upgrade, downgrade, install, remove, reason) median of {SYNC_ROUNDS}: pacsyncd {}  bare pacman {}  ratio {:.2}  goal ≤ {}",
            ms(d),
            ms(b),
            d.as_secs_f64() / b.as_secs_f64(),
            ms(b.mul_f64(1.1) + Duration::from_millis(100))
        );
        Ok(())
    })
}
