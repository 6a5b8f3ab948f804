//! A real `pacsyncd` process on a [`SystemBus`], managing a [`Sandbox`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::sandbox::Sandbox;
use crate::scratch::ScratchDir;
use crate::system_bus::SystemBus;

/// What a daemon keeps across restarts (its state directory) and its
/// configuration; outlives the processes started from it.
#[derive(Debug)]
pub struct DaemonHome {
    dir: ScratchDir,
}

impl DaemonHome {
    /// A configuration for a daemon that manages `sandbox`.
    pub fn new(sandbox: &Sandbox) -> anyhow::Result<DaemonHome> {
        let dir = ScratchDir::new("pacsyncd-home")?;
        let config = format!(
            "state_dir = {state:?}\nreport_interval_secs = 3600\n\n[pacman]\nconfig = {conf:?}\nroot = {root:?}\ndbpath = {db:?}\nlock_wait_secs = 5\n",
            state = dir.path().join("state").display().to_string(),
            conf = sandbox.config_path().display().to_string(),
            root = sandbox.root().display().to_string(),
            db = sandbox.dbpath().display().to_string(),
        );
        std::fs::write(dir.path().join("pacsyncd.toml"), config)?;
        Ok(DaemonHome { dir })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pacsyncd.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pacsyncd.log")
    }

    /// The daemon's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct DaemonProcess {
    child: Child,
}

impl DaemonProcess {
    /// Start `binary` on `bus` and return once it owns its name.
    pub fn start(
        binary: &Path,
        bus: &SystemBus,
        home: &DaemonHome,
    ) -> anyhow::Result<DaemonProcess> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.log_path())?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(home.config_path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .env("PACSYNC_LOG", "pacsyncd=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut me = DaemonProcess { child };
        if let Err(e) = bus.wait_for_name("org.pacsync.Daemon1", Duration::from_secs(20)) {
            let _ = me.child.kill();
            return Err(e.context(format!("pacsyncd did not start; its log:\n{}", home.log())));
        }
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
