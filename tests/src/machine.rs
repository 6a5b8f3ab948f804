//! One machine of a fleet as its user sees it: a sandboxed pacman root, its
//! own private system bus with a real polkitd, its own `pacsyncd`, and the
//! `pacsync` command run against that bus (`--bus`), optionally as an
//! unprivileged user.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::daemon_process::{DaemonHome, DaemonProcess};
use crate::sandbox::Sandbox;
use crate::server_process::sibling_binary;
use crate::system_bus::{SystemBus, TestUser};

/// The built programs a fleet runs: daemon, CLI and server.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub daemon: PathBuf,
    pub cli: PathBuf,
    pub server: PathBuf,
}

impl Binaries {
    /// The binaries in the same target directory as `anchor` (any binary
    /// of the workspace, e.g. a test's `CARGO_BIN_EXE_…`).
    pub fn beside(anchor: &Path) -> Binaries {
        let anchor = anchor.to_string_lossy();
        Binaries {
            daemon: sibling_binary(&anchor, "pacsyncd"),
            cli: sibling_binary(&anchor, "pacsync"),
            server: sibling_binary(&anchor, "pacsync-server"),
        }
    }
}

/// A machine: the fields drop in order, so the daemon stops before its bus
/// and its root go.
#[derive(Debug)]
pub struct Machine {
    daemon: Option<DaemonProcess>,
    pub bus: SystemBus,
    pub home: DaemonHome,
    pub sandbox: Sandbox,
    pub name: String,
    cli: PathBuf,
    daemon_binary: PathBuf,
    user: Option<TestUser>,
}

impl Machine {
    /// Start a bus with polkitd and a daemon managing `sandbox`. The CLI
    /// runs as `user` (root when `None`).
    pub fn start(
        name: &str,
        sandbox: Sandbox,
        binaries: &Binaries,
        user: Option<TestUser>,
    ) -> anyhow::Result<Machine> {
        let bus = SystemBus::start()?;
        let home = DaemonHome::new(&sandbox)?;
        let daemon = DaemonProcess::start(&binaries.daemon, &bus, &home)?;
        Ok(Machine {
            daemon: Some(daemon),
            bus,
            home,
            sandbox,
            name: name.to_owned(),
            cli: binaries.cli.clone(),
            daemon_binary: binaries.daemon.clone(),
            user,
        })
    }

    /// The `pacsync` command for this machine's bus, as its user.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["--bus", self.bus.address()]).stdin(Stdio::null());
        if let Some(u) = &self.user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    pub fn pacsync(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command()
            .args(args)
            .output()
            .with_context(|| format!("running pacsync {args:?} on {}", self.name))
    }

    /// `pacsync ARGS… --json`: the exit code and the JSON printed (on
    /// stdout, or the error object on failure).
    pub fn json(&self, args: &[&str]) -> anyhow::Result<(Option<i32>, Value)> {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.pacsync(&all)?;
        let v = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "pacsync {all:?} on {} printed no JSON: {}{}\n--- daemon log ---\n{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            )
        })?;
        Ok((out.status.code(), v))
    }

    /// `pacsync status --json`.
    pub fn status(&self) -> anyhow::Result<Value> {
        Ok(self.json(&["status"])?.1)
    }

    /// Wait until `pacsync status` says `want`; the last answer on success.
    pub fn wait_status(&self, want: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status()?;
            if s["status"] == want {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: status not {want} within {within:?}: {s}\n--- daemon log ---\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Refresh` on D-Bus (the window's Refresh button): rescan and report
    /// now.
    pub fn refresh(&self) -> anyhow::Result<()> {
        let out = self.bus.call_daemon(None, "Refresh", &[])?;
        if !out.status.success() {
            bail!(
                "Refresh on {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `pacsync register` with an enrollment token.
    pub fn register(&self, server_url: &str, token: &str) -> anyhow::Result<()> {
        let out = self.pacsync(&[
            "register", "--server", server_url, "--token", token, "--name", &self.name,
        ])?;
        if !out.status.success() {
            bail!(
                "pacsync register on {}: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// `pacman -Q` of the sandbox.
    pub fn packages(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self.sandbox.query()?)
    }

    /// `pacsync waybar` on this machine's bus, its lines read on a thread.
    pub fn waybar(&self) -> anyhow::Result<WaybarStream> {
        let mut child = self
            .command()
            .arg("waybar")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("pacsync waybar")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    break;
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Ok(WaybarStream { child, lines: rx })
    }

    /// Stop the daemon (SIGKILL) and start it again on the same state.
    pub fn restart_daemon(&mut self) -> anyhow::Result<()> {
        if let Some(d) = self.daemon.take() {
            d.kill()?;
        }
        self.daemon = Some(DaemonProcess::start(
            &self.daemon_binary,
            &self.bus,
            &self.home,
        )?);
        Ok(())
    }

    /// The end of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.home.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The JSON lines `pacsync waybar` prints.
#[derive(Debug)]
pub struct WaybarStream {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl WaybarStream {
    /// The first line whose class is `class`, within `within`.
    pub fn wait_class(&self, class: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["class"] == class => return Ok(v),
                Ok(v) => seen.push(v["class"].to_string()),
                Err(_) => {
                    bail!("no WayBar line with class {class} within {within:?}; saw {seen:?}")
                }
            }
        }
    }
}

impl Drop for WaybarStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
