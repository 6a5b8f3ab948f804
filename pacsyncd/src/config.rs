//! The daemon's configuration: `/etc/pacsync/pacsyncd.toml`, then
//! `PACSYNC_*` environment variables on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/pacsync/pacsyncd.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The server to report to; empty until the machine is registered
    /// (Register stores it in the state directory instead).
    pub server_url: String,
    /// The name shown on the server; the host name when empty.
    pub machine_name: String,
    /// Seconds between reports when nothing changes.
    pub report_interval_secs: u64,
    /// Where credentials, the status cache and the state history live.
    pub state_dir: PathBuf,
    /// Run the syncs and reverts an operator requests through the server
    /// (the push channel); when false they are reported failed.
    pub accept_remote_operations: bool,
    pub pacman: PacmanConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacmanConfig {
    /// The pacman binary.
    pub binary: PathBuf,
    /// pacman.conf.
    pub config: PathBuf,
    /// Overrides the configuration's RootDir (tests run on sandboxes).
    pub root: Option<PathBuf>,
    /// Overrides the configuration's DBPath.
    pub dbpath: Option<PathBuf>,
    /// How long to wait for another pacman's lock before failing.
    pub lock_wait_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_url: String::new(),
            machine_name: String::new(),
            report_interval_secs: 900,
            state_dir: PathBuf::from("/var/lib/pacsync"),
            accept_remote_operations: true,
            pacman: PacmanConfig::default(),
        }
    }
}

impl Default for PacmanConfig {
    fn default() -> Self {
        PacmanConfig {
            binary: PathBuf::from("pacman"),
            config: PathBuf::from("/etc/pacman.conf"),
            root: None,
            dbpath: None,
            lock_wait_secs: 60,
        }
    }
}

impl Config {
    /// Read `path` (a missing file means defaults), then apply the
    /// environment.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid configuration {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = var("PACSYNC_SERVER_URL") {
            self.server_url = v;
        }
        if let Some(v) = var("PACSYNC_MACHINE_NAME") {
            self.machine_name = v;
        }
        if let Some(v) = var("PACSYNC_REPORT_INTERVAL_SECS") {
            self.report_interval_secs = v
                .parse()
                .with_context(|| format!("PACSYNC_REPORT_INTERVAL_SECS={v:?} is not a number"))?;
        }
        if let Some(v) = var("PACSYNC_ACCEPT_REMOTE_OPERATIONS") {
            self.accept_remote_operations = v.parse().with_context(|| {
                format!("PACSYNC_ACCEPT_REMOTE_OPERATIONS={v:?} is not true or false")
            })?;
        }
        if let Some(v) = var("PACSYNC_STATE_DIR") {
            self.state_dir = v.into();
        }
        if let Some(v) = var("PACSYNC_PACMAN_BIN") {
            self.pacman.binary = v.into();
        }
        if let Some(v) = var("PACSYNC_PACMAN_CONFIG") {
            self.pacman.config = v.into();
        }
        if let Some(v) = var("PACSYNC_PACMAN_ROOT") {
            self.pacman.root = Some(v.into());
        }
        if let Some(v) = var("PACSYNC_PACMAN_DBPATH") {
            self.pacman.dbpath = Some(v.into());
        }
        if self.report_interval_secs == 0 {
            bail!("report_interval_secs must be at least 1");
        }
        Ok(())
    }

    pub fn report_interval(&self) -> Duration {
        Duration::from_secs(self.report_interval_secs)
    }

    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs(self.pacman.lock_wait_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut c: Config =
            toml::from_str("server_url = \"https://a\"\n[pacman]\nconfig = \"/tmp/p.conf\"\n")
                .expect("valid");
        assert_eq!(c.report_interval_secs, 900);
        c.apply_env(|k| (k == "PACSYNC_SERVER_URL").then(|| "https://b".to_owned()))
            .expect("valid env");
        assert_eq!(c.server_url, "https://b");
        assert_eq!(c.pacman.config, PathBuf::from("/tmp/p.conf"));
    }

    #[test]
    fn unknown_keys_and_bad_numbers_are_refused() {
        assert!(toml::from_str::<Config>("srever_url = \"x\"").is_err());
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "PACSYNC_REPORT_INTERVAL_SECS").then(|| "soon".to_owned()))
            .expect_err("not a number");
        assert!(err.to_string().contains("soon"));
    }
}
