//! The core benchmarks of issue 2, as one command anyone can run:
//!
//! ```text
//! cargo bench -p pacsync-tests --bench core
//! ```
//!
//! 1. A 2,000-package local database read by whole processes: the full state
//!    (`pacsync-scan local --json`) against `pacman -Qi`, names and versions
//!    (`pacsync-scan local --names-only`) against `pacman -Q`.
//! 2. A 15,000-entry sync database, gzip and zstd: `pacsync-scan sync`
//!    against `pacman -Sl`.
//! 3. Plan, status and content hashes of two ~3,000-package states, in
//!    process, per call.
//!
//! Process pairs run interleaved (alternating which goes first) after a
//! warm-up, so load from other work on the machine and the page cache affect
//! both sides alike; the table gives the median and the minimum of each,
//! the ratio of the medians (the one held against the goal) and of the
//! minimums, and how much of the machine other processes took meanwhile:
//! pacsync's readers use several threads, so a busy machine slows them more
//! than single-threaded pacman. Outputs are checked against pacman's before
//! anything is timed. Set `PACSYNC_BENCH_REPS` to change the number of timed
//! runs per process (default 31). Exits non-zero on any error; a missed goal
//! is reported in the table, not an error.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use pacsync_core::package::Origin;
use pacsync_core::plan::{Action, Policy, plan};
use pacsync_core::state::{PackageState, TargetEntry, TargetState};
use pacsync_core::status::drift;
use pacsync_core::{InstallReason, Package, Version};
use pacsync_tests::{
    DbCompression, Sandbox, generate_local_db, generate_sync_db, synthetic_packages,
    verify_local_db, verify_sync_db,
};

const LOCAL_PACKAGES: usize = 2_000;
const SYNC_ENTRIES: usize = 15_000;
const STATE_PACKAGES: usize = 3_000;
const SEED: u64 = 2;
const WARM_UP: usize = 3;
const DEFAULT_REPS: usize = 31;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("core bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let reps = match std::env::var("PACSYNC_BENCH_REPS") {
        Ok(n) => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("PACSYNC_BENCH_REPS={n:?} is not a positive number"))?,
        Err(_) => DEFAULT_REPS,
    };
    which("pacman")?;
    eprintln!("building pacsync-scan (release) ...");
    let scan = build_scan()?;

    let load_before = load_average();
    let mut rows = Vec::new();
    eprintln!("local database: {LOCAL_PACKAGES} packages ...");
    let local = Sandbox::with_servers(&[])?;
    let packages = generate_local_db(&local.dbpath(), LOCAL_PACKAGES, SEED)?;
    verify_local_db(&local.dbpath(), &packages).context("pacman reads the generated local db")?;
    rows.extend(local_rows(&scan, &local, reps)?);

    for compression in [DbCompression::Gzip, DbCompression::Zstd] {
        eprintln!("sync database: {SYNC_ENTRIES} entries, {compression:?} ...");
        rows.push(sync_row(&scan, compression, reps)?);
    }

    eprintln!("plan and status: two {STATE_PACKAGES}-package states ...");
    let calls = in_process()?;

    let load_after = load_average();

    println!();
    println!("{}", machine()?);
    println!("load average (1, 5, 15 min): {load_before} before, {load_after} after\n");
    println!("{}", process_table(&rows, reps));
    println!("{}", call_table(&calls));
    Ok(())
}

/// CPUs and their model, as `nproc` and `lscpu` report them.
fn machine() -> anyhow::Result<String> {
    let cpus = std::thread::available_parallelism()?;
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    Ok(format!("machine: {cpus} CPUs (nproc), {model}"))
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// One comparison of two whole processes.
struct ProcessRow {
    what: String,
    ours: Timings,
    pacman: Timings,
    /// Share of the machine other processes used meanwhile.
    others: f64,
    goal: f64,
}

/// Two timed commands, and how busy the rest of the machine was.
struct Comparison {
    ours: Timings,
    pacman: Timings,
    others: f64,
}

/// CPU time in clock ticks: the whole machine's busy and total time
/// (`/proc/stat`), and this process's and its waited-for children's
/// (`/proc/self/stat`).
struct CpuTicks {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuTicks {
    fn now() -> anyhow::Result<Self> {
        let stat = fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .context("no cpu line in /proc/stat")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let own = fs::read_to_string("/proc/self/stat")?;
        let fields: Vec<&str> = own
            .rsplit_once(')')
            .context("unreadable /proc/self/stat")?
            .1
            .split_whitespace()
            .collect();
        // utime, stime, cutime, cstime: fields 14 to 17, after the name.
        let ours = fields
            .get(11..15)
            .context("short /proc/self/stat")?
            .iter()
            .map(|f| f.parse::<u64>())
            .sum::<Result<u64, _>>()?;
        Ok(CpuTicks {
            busy: total - idle,
            total,
            ours,
        })
    }

    /// The share of the machine's time that other processes used since
    /// `start`.
    fn others_since(&self, start: &CpuTicks) -> f64 {
        let busy = self.busy.saturating_sub(start.busy);
        let ours = self.ours.saturating_sub(start.ours);
        let total = self.total.saturating_sub(start.total).max(1);
        busy.saturating_sub(ours) as f64 / total as f64
    }
}

/// Times of one command, sorted.
struct Timings(Vec<Duration>);

impl Timings {
    fn new(mut times: Vec<Duration>) -> Self {
        times.sort_unstable();
        Timings(times)
    }

    fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    fn min(&self) -> Duration {
        self.0[0]
    }
}

fn local_rows(scan: &Path, sandbox: &Sandbox, reps: usize) -> anyhow::Result<Vec<ProcessRow>> {
    let dbpath = sandbox.dbpath();
    let scan_cmd = |args: &[&str]| {
        let mut cmd = Command::new(scan);
        cmd.arg("local").arg("--dbpath").arg(&dbpath).args(args);
        cmd
    };
    let pacman_cmd = |op: &str| {
        let mut cmd = sandbox.pacman_command();
        cmd.arg(op);
        cmd
    };

    // Same listing as pacman's, byte for byte; every package in the JSON,
    // with the fields pacman -Qi shows.
    let names = output(&mut scan_cmd(&["--names-only"]))?;
    let listed = output(&mut pacman_cmd("-Q"))?;
    ensure!(
        names == listed,
        "pacsync-scan --names-only and pacman -Q list different packages"
    );
    let json: serde_json::Value = serde_json::from_slice(&output(&mut scan_cmd(&["--json"]))?)
        .context("pacsync-scan --json printed invalid JSON")?;
    let full = json
        .as_array()
        .context("pacsync-scan --json printed no array")?;
    ensure!(
        full.len() == LOCAL_PACKAGES,
        "pacsync-scan --json gave {} packages",
        full.len()
    );
    for field in ["reason", "size", "depends", "provides", "install_date"] {
        ensure!(
            full.iter().all(|p| p.get(field).is_some()),
            "pacsync-scan --json lacks {field}"
        );
    }
    output(&mut pacman_cmd("-Qi"))?;

    let full = compare(&mut scan_cmd(&["--json"]), &mut pacman_cmd("-Qi"), reps)?;
    let names = compare(
        &mut scan_cmd(&["--names-only"]),
        &mut pacman_cmd("-Q"),
        reps,
    )?;
    Ok(vec![
        ProcessRow {
            what: format!("local {LOCAL_PACKAGES}: full state (--json) vs -Qi"),
            ours: full.ours,
            pacman: full.pacman,
            others: full.others,
            goal: 0.25,
        },
        ProcessRow {
            what: format!("local {LOCAL_PACKAGES}: --names-only vs -Q"),
            ours: names.ours,
            pacman: names.pacman,
            others: names.others,
            goal: 0.5,
        },
    ])
}

fn sync_row(scan: &Path, compression: DbCompression, reps: usize) -> anyhow::Result<ProcessRow> {
    const REPO: &str = "bench";
    // Its own sandbox: an empty local database, one repository.
    let sandbox = Sandbox::with_servers(&[(REPO, "file:///nonexistent".to_owned())])?;
    let sync = sandbox.dbpath().join("sync");
    fs::create_dir_all(&sync).with_context(|| format!("creating {}", sync.display()))?;
    let db = sync.join(format!("{REPO}.db"));
    let specs = generate_sync_db(&db, SYNC_ENTRIES, SEED, compression)?;
    verify_sync_db(&db, &specs).context("pacman reads the generated sync db")?;

    let mut ours = Command::new(scan);
    ours.arg("sync").arg(&db);
    let mut theirs = sandbox.pacman_command();
    theirs.args(["-Sl", REPO]);
    ensure!(
        output(&mut ours)? == output(&mut theirs)?,
        "pacsync-scan sync and pacman -Sl list different packages"
    );
    let timed = compare(&mut ours, &mut theirs, reps)?;
    let size = fs::metadata(&db)?.len();
    Ok(ProcessRow {
        what: format!(
            "sync {SYNC_ENTRIES} ({}, {:.1} MiB): sync vs -Sl",
            match compression {
                DbCompression::Gzip => "gzip",
                DbCompression::Zstd => "zstd",
            },
            size as f64 / (1 << 20) as f64
        ),
        ours: timed.ours,
        pacman: timed.pacman,
        others: timed.others,
        goal: 0.5,
    })
}

/// Runs `a` and `b` [`WARM_UP`] times each untimed, then `reps` times each,
/// interleaved, alternating which of the two goes first.
fn compare(a: &mut Command, b: &mut Command, reps: usize) -> anyhow::Result<Comparison> {
    for _ in 0..WARM_UP {
        time(a)?;
        time(b)?;
    }
    let start = CpuTicks::now()?;
    let (mut ta, mut tb) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for i in 0..reps {
        if i % 2 == 0 {
            ta.push(time(a)?);
            tb.push(time(b)?);
        } else {
            tb.push(time(b)?);
            ta.push(time(a)?);
        }
    }
    Ok(Comparison {
        ours: Timings::new(ta),
        pacman: Timings::new(tb),
        others: CpuTicks::now()?.others_since(&start),
    })
}

/// Wall time of one run, start to exit, with stdout going to `/dev/null`.
fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let null = File::create("/dev/null").context("opening /dev/null")?;
    cmd.stdin(Stdio::null()).stdout(null).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", command_line(cmd)))?;
    let out = child.wait_with_output()?;
    let elapsed = start.elapsed();
    ensure!(
        out.status.success(),
        "{} failed ({}): {}",
        command_line(cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(elapsed)
}

/// What a successful run prints on stdout.
fn output(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {}", command_line(cmd)))?;
    ensure!(
        out.status.success(),
        "{} failed ({}): {}",
        command_line(cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not installed (not found on PATH)"))
}

/// Builds `pacsync-scan` in the release profile with the cargo running this
/// bench and returns the executable cargo reports.
fn build_scan() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has no parent directory")?;
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "-p",
        "pacsync-pacman",
        "--bin",
        "pacsync-scan",
        "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(workspace.join("Cargo.toml"))
    .stderr(Stdio::inherit());
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("starting {}", command_line(&cmd)))?;
    if !out.status.success() {
        bail!("{} failed ({})", command_line(&cmd), out.status);
    }
    let executable = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "pacsync-scan")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from));
    executable.with_context(|| format!("{} reported no pacsync-scan binary", command_line(&cmd)))
}

/// One in-process operation, per call.
struct CallRow {
    what: String,
    timings: Timings,
}

/// Two states as a pool sees them: the target made from one machine, and
/// another machine that differs in about one package of ten.
fn in_process() -> anyhow::Result<Vec<CallRow>> {
    let (installed, target) = states();
    let policy = Policy::default();
    let globs = Policy {
        keep_extras: false,
        exclusions: pacsync_core::exclusion::Exclusions::from_patterns([
            "linux*", "nvidia*", "*-git",
        ])?,
    };

    // The states differ as intended, and the plan says so.
    let the_plan = plan(&installed, &target, &policy);
    let summary = the_plan.summary();
    ensure!(
        summary.upgrade > 0
            && summary.downgrade > 0
            && summary.install > 0
            && summary.remove > 0
            && summary.reinstall == 0
            && the_plan.with_action(Action::ChangeReason).next().is_some(),
        "unexpected plan {summary:?}"
    );

    let mut rows = Vec::new();
    let mut bench = |what: String, f: &mut dyn FnMut()| {
        rows.push(CallRow {
            what,
            timings: per_call(f),
        });
    };
    let sizes = format!("{} installed, {} in target", installed.len(), target.len());
    bench(format!("plan ({sizes}, no exclusions)"), &mut || {
        black_box(plan(black_box(&installed), black_box(&target), &policy));
    });
    bench("plan (same, 3 exclusion globs)".to_owned(), &mut || {
        black_box(plan(black_box(&installed), black_box(&target), &globs));
    });
    bench(
        format!(
            "status::drift of that plan ({} steps)",
            the_plan.steps.len()
        ),
        &mut || {
            black_box(drift(black_box(&the_plan)));
        },
    );
    bench("status from scratch: plan + drift".to_owned(), &mut || {
        black_box(drift(&plan(
            black_box(&installed),
            black_box(&target),
            &policy,
        )));
    });
    bench(
        format!("PackageState::content_hash ({})", installed.len()),
        &mut || {
            black_box(black_box(&installed).content_hash());
        },
    );
    bench(
        format!("TargetState::content_hash ({})", target.len()),
        &mut || {
            black_box(black_box(&target).content_hash());
        },
    );
    Ok(rows)
}

/// Per-call times of `f`: calls batched so a batch takes about 5 ms, a
/// warm-up batch, then 51 batches.
fn per_call(f: &mut dyn FnMut()) -> Timings {
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(5) || calls < 3 {
        f();
        calls += 1;
    }
    let batch = calls.max(1);
    let mut times = Vec::with_capacity(51);
    for i in 0..52 {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if i > 0 {
            times.push(start.elapsed() / batch);
        }
    }
    Timings::new(times)
}

/// Machine A's packages, and the target of a pool made from machine B. In
/// every hundred packages: 3 upgrades, 1 downgrade, 2 reason changes, 2
/// installs, 2 removals; the other 90 equal.
fn states() -> (PackageState, TargetState) {
    // 2% of the names are only in the target, 2% only on the machine.
    let all = synthetic_packages(STATE_PACKAGES * 100 / 98, SEED);
    let mut installed = Vec::new();
    let mut target = Vec::new();
    for (i, p) in all.iter().enumerate() {
        let package = Package {
            name: p.spec.name.clone(),
            version: Version::new(p.spec.version.as_str()),
            arch: p.spec.arch.clone(),
            reason: p.reason,
            origin: Some(Origin::Repo(
                if i % 7 == 0 { "core" } else { "extra" }.to_owned(),
            )),
            installed_size: p.spec.installed_size(),
            depends: p.spec.depends.clone(),
        };
        let mut entry = TargetEntry {
            version: package.version.clone(),
            reason: package.reason,
        };
        let mut package = Some(package);
        match i % 100 {
            // Target newer: the machine is behind.
            0..=2 => entry.version = newer(&entry.version),
            // Machine newer: it is ahead.
            3 => {
                if let Some(p) = package.as_mut() {
                    p.version = newer(&p.version);
                }
            }
            4..=5 => {
                entry.reason = match entry.reason {
                    InstallReason::Explicit => InstallReason::Dependency,
                    InstallReason::Dependency => InstallReason::Explicit,
                }
            }
            6..=7 => package = None,
            8..=9 => {
                installed.extend(package.take());
                continue;
            }
            _ => {}
        }
        installed.extend(package);
        target.push((p.spec.name.clone(), entry));
    }
    (installed.into(), target.into_iter().collect())
}

/// A version pacman orders after `v`: one more pkgrel component.
fn newer(v: &Version) -> Version {
    Version::new(format!("{v}.1"))
}

fn process_table(rows: &[ProcessRow], reps: usize) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    let mut table = format!(
        "Whole processes, ms (median / min of {reps} interleaved runs after {WARM_UP} warm-up runs; \
         \"others\": the share of the machine's CPU time other processes took meanwhile)\n\n\
         | benchmark | pacsync median | pacsync min | pacman median | pacman min | ratio (median) | ratio (min) | goal | met | others |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"
    );
    for row in rows {
        let ratio = row.ours.median().as_secs_f64() / row.pacman.median().as_secs_f64();
        let ratio_min = row.ours.min().as_secs_f64() / row.pacman.min().as_secs_f64();
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {ratio:.3}× | {ratio_min:.3}× | ≤ {}× | {} | {:.0}% |",
            row.what,
            ms(row.ours.median()),
            ms(row.ours.min()),
            ms(row.pacman.median()),
            ms(row.pacman.min()),
            row.goal,
            if ratio <= row.goal { "yes" } else { "NO" },
            row.others * 100.0
        );
    }
    table
}

fn call_table(rows: &[CallRow]) -> String {
    // Three significant digits at least: a status of a plan takes
    // nanoseconds.
    let us = |d: Duration| {
        let us = d.as_secs_f64() * 1e6;
        match us {
            _ if us >= 100.0 => format!("{us:.0}"),
            _ if us >= 1.0 => format!("{us:.1}"),
            _ => format!("{us:.3}"),
        }
    };
    let mut table = "In process, µs per call (median / min of 51 batches)\n\n\
                     | operation | median µs | min µs |\n\
                     |---|---:|---:|\n"
        .to_owned();
    for row in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} |",
            row.what,
            us(row.timings.median()),
            us(row.timings.min())
        );
    }
    table
}
