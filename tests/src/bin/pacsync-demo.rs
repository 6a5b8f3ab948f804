//! `pacsync-demo`: the whole system on one machine, to try it out.
//!
//! Starts pacsync-server on an embedded SQLite database, makes two local
//! package repositories of real package files, and three machines — each a
//! sandboxed pacman root with its own pacsyncd on its own private system
//! bus with polkitd — enrolls them in a pool `office` and makes alpha's
//! packages the pool's target. Then it prints what to type, and removes
//! everything on Ctrl-C.
//!
//! `--check` does the same without waiting: it checks that the machines
//! enrolled and that one of them syncs, then cleans up and exits (for
//! tests and CI).
//!
//! Run it with `scripts/run --demo` (root; pacman, dbus-daemon, polkitd).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use pacsync_tests::machine::{Binaries, Machine};
use pacsync_tests::office::Office;
use pacsync_tests::server_process::ServerProcess;
use pacsync_tests::system_bus::SystemBus;

/// The admin password `ServerProcess::admin_client` sets.
const ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Demo {
    machines: Vec<Machine>,
    server: ServerProcess,
    office: Office,
}

fn start(bins: &Binaries) -> anyhow::Result<Demo> {
    eprintln!("pacsync-demo: making the package repositories…");
    let office = Office::new()?;
    eprintln!("pacsync-demo: starting pacsync-server on SQLite…");
    let server = ServerProcess::start(&bins.server)?;
    let admin = server.admin_client()?;
    let (_pool, token) = admin.pool_with_token("office")?;
    let mut machines = Vec::new();
    for (name, sandbox) in [
        ("alpha", office.alpha()?),
        ("bravo", office.bravo()?),
        ("charlie", office.charlie()?),
    ] {
        eprintln!("pacsync-demo: starting {name}: bus, polkitd, pacsyncd…");
        let m = Machine::start(name, sandbox, bins, None)?;
        m.register(&server.url(), &token)?;
        machines.push(m);
    }
    let alpha = &machines[0];
    let (code, out) = alpha.json(&["set-latest", "-m", "the demo's baseline", "--yes"])?;
    ensure!(code == Some(0), "set-latest on alpha: {out}");
    // The others hear of the new target at their next report: now.
    for m in &machines[1..] {
        m.refresh()?;
    }
    Ok(Demo {
        machines,
        server,
        office,
    })
}

impl Demo {
    fn instructions(&self, cli: &Path) -> anyhow::Result<String> {
        let cli = cli.display();
        let mut out = format!(
            "\npacsync demo: a server and three machines are running.\n\n\
             Server:    {url}  (admin / {ADMIN_PASSWORD})\n\
             Repos:     core {core}, extra {extra}\n\n\
             Machines (status as their daemon sees it):\n",
            url = self.server.url(),
            core = self.office.core.dir().display(),
            extra = self.office.extra.dir().display(),
        );
        for m in &self.machines {
            let status = m.status()?;
            out.push_str(&format!(
                "  {:<8} {:<9} {cli} --bus {} status\n",
                m.name,
                status["status"].as_str().unwrap_or("?"),
                m.bus.address()
            ));
        }
        let bravo = &self.machines[1];
        let alpha = &self.machines[0];
        out.push_str(&format!(
            "\nTry:\n\
             \x20 {cli} --bus {b} plan            # what syncing bravo would change\n\
             \x20 {cli} --bus {b} sync            # do it (pacman runs in bravo's sandbox)\n\
             \x20 {cli} --bus {b} revert          # and back\n\
             \x20 {cli} --bus {a} waybar          # alpha's status bar line, one per change\n\
             \x20 pacman --config {conf} -S rsync  # change alpha by hand, watch it turn ahead\n\
             \x20 {cli} --bus {a} set-latest -m 'with rsync'   # make that the pool's target\n\
             \x20 curl -s {url}/health/ready    # the server's REST API\n\n\
             Each machine's pacman root, config and daemon log are under:\n",
            b = bravo.bus.address(),
            a = alpha.bus.address(),
            conf = alpha.sandbox.config_path().display(),
            url = self.server.url(),
        ));
        for m in &self.machines {
            out.push_str(&format!(
                "  {:<8} {} (log {})\n",
                m.name,
                m.sandbox.dir().display(),
                m.home.log_path().display()
            ));
        }
        Ok(out)
    }

    /// What `--check` asserts: every machine enrolled in `office` with the
    /// status its packages give, and bravo syncs to the target.
    fn check(&self) -> anyhow::Result<()> {
        let want = [
            ("alpha", "in_sync"),
            ("bravo", "diverged"),
            ("charlie", "behind"),
        ];
        for (m, (name, status)) in self.machines.iter().zip(want) {
            let s = m.wait_status(status, Duration::from_secs(10))?;
            ensure!(s["machine_name"] == name, "{name}: {s}");
            ensure!(s["pool"] == "office", "{name} is not in office: {s}");
        }
        let bravo = &self.machines[1];
        let (code, out) = bravo.json(&["sync", "--yes"])?;
        ensure!(code == Some(0), "sync on bravo: {out}");
        bravo.wait_status("in_sync", Duration::from_secs(10))?;
        Ok(())
    }
}

fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut check = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: pacsync-demo [--check]\n\n\
                     Runs a pacsync server and three sandboxed machines until Ctrl-C;\n\
                     --check verifies they enrolled and sync, then cleans up and exits."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if !pacsync_tests::require_pacman_sandbox() || !SystemBus::available() {
        bail!(
            "the demo needs root, pacman, repo-add, dbus-daemon, gdbus and polkitd: run scripts/setup"
        );
    }
    let me = std::env::current_exe().context("where am I")?;
    let bins = Binaries::beside(&me);
    let demo = start(&bins)?;
    println!("{}", demo.instructions(&bins.cli)?);
    if check {
        demo.check()?;
        println!("check: the three machines are enrolled in office, and bravo synced.");
    } else {
        println!("Press Ctrl-C to stop: the server, the daemons, the buses and every file go.");
        wait_for_ctrl_c()?;
    }
    drop(demo);
    eprintln!("pacsync-demo: stopped and cleaned up.");
    Ok(())
}
