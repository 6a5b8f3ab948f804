//! A pacman root of its own, driven by the real pacman.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;

use crate::command::{CommandError, command_line, failed, run, run_unchecked};
use crate::repo::Repo;
use crate::scratch::ScratchDir;

/// A temporary root `R` with `R/var/lib/pacman`, a cache, a log, hook and
/// gpg directories and a pacman.conf of its own (outside `R`) listing the
/// given repositories in order.
#[derive(Debug)]
pub struct Sandbox {
    dir: ScratchDir,
    root: PathBuf,
    config: PathBuf,
}

impl Sandbox {
    pub fn new(repos: &[&Repo]) -> anyhow::Result<Sandbox> {
        let servers: Vec<(&str, String)> = repos.iter().map(|r| (r.name(), r.url())).collect();
        Sandbox::with_servers(&servers)
    }

    /// Repositories given as `(name, Server URL)`, for servers that are not
    /// a [`Repo`] (an HTTP mirror, a missing one).
    pub fn with_servers(servers: &[(&str, String)]) -> anyhow::Result<Sandbox> {
        let dir = ScratchDir::new("pacsync-sandbox-")?;
        let root = dir.path().join("root");
        let config = dir.path().join("pacman.conf");
        let sandbox = Sandbox { dir, root, config };
        for path in [
            sandbox.dbpath(),
            sandbox.cache_dir(),
            sandbox.hook_dir(),
            sandbox.gpg_dir(),
            sandbox.root.join("var/log"),
        ] {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        std::fs::write(&sandbox.config, sandbox.render_config(servers))
            .with_context(|| format!("writing {}", sandbox.config.display()))?;
        Ok(sandbox)
    }

    fn render_config(&self, servers: &[(&str, String)]) -> String {
        let r = self.root.display();
        let mut conf = format!(
            "[options]\n\
             RootDir = {r}\n\
             DBPath = {r}/var/lib/pacman/\n\
             CacheDir = {r}/var/cache/pacman/pkg/\n\
             LogFile = {r}/var/log/pacman.log\n\
             GPGDir = {r}/etc/pacman.d/gnupg/\n\
             HookDir = {r}/etc/pacman.d/hooks/\n\
             Architecture = auto\n\
             SigLevel = Never\n\
             LocalFileSigLevel = Never\n"
        );
        for (name, url) in servers {
            conf.push_str(&format!("\n[{name}]\nServer = {url}\n"));
        }
        conf
    }

    /// The directory holding the root and the config, kept on failure with
    /// `PACSYNC_KEEP_SANDBOX=1`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dbpath(&self) -> PathBuf {
        self.root.join("var/lib/pacman")
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("var/cache/pacman/pkg")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("var/log/pacman.log")
    }

    pub fn hook_dir(&self) -> PathBuf {
        self.root.join("etc/pacman.d/hooks")
    }

    pub fn gpg_dir(&self) -> PathBuf {
        self.root.join("etc/pacman.d/gnupg")
    }

    /// `pacman --config C --root R --dbpath R/var/lib/pacman --noconfirm`
    /// without an operation, for callers that need the raw process.
    pub fn pacman_command(&self) -> Command {
        let mut cmd = Command::new("pacman");
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--root")
            .arg(&self.root)
            .arg("--dbpath")
            .arg(self.dbpath())
            .args(["--noconfirm", "--color", "never"])
            // pacman's messages are translated; tests match the English ones.
            .env("LC_ALL", "C");
        cmd
    }

    /// Runs pacman with `args`; a non-zero exit is an error with the command
    /// line, stdout and stderr.
    pub fn pacman<I, S>(&self, args: I) -> Result<Output, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.pacman_command().args(args))
    }

    /// Refreshes the sync databases: `-Syy`, not `-Sy`. A plain `-Sy` asks
    /// for the database only if modified since the copy it has, at one-second
    /// resolution, so a repository changed within the second of the last sync
    /// stays stale (pacman even prints "downloading").
    pub fn sync_dbs(&self) -> Result<Output, CommandError> {
        self.pacman(["-Syy"])
    }

    /// `-S names`.
    pub fn install(&self, names: &[&str]) -> Result<Output, CommandError> {
        self.pacman(std::iter::once("-S").chain(names.iter().copied()))
    }

    /// `-U paths` (files or URLs).
    pub fn install_files<P: AsRef<OsStr>>(&self, paths: &[P]) -> Result<Output, CommandError> {
        let args = std::iter::once(OsStr::new("-U")).chain(paths.iter().map(AsRef::as_ref));
        self.pacman(args)
    }

    /// `-R names`.
    pub fn remove(&self, names: &[&str]) -> Result<Output, CommandError> {
        self.pacman(std::iter::once("-R").chain(names.iter().copied()))
    }

    /// `-D --asdeps name` or `-D --asexplicit name`.
    pub fn set_reason(&self, name: &str, dependency: bool) -> Result<Output, CommandError> {
        let flag = if dependency {
            "--asdeps"
        } else {
            "--asexplicit"
        };
        self.pacman(["-D", flag, name])
    }

    /// Installed packages, name → version (`pacman -Q`).
    pub fn query(&self) -> Result<BTreeMap<String, String>, CommandError> {
        self.query_with(&["-Q"])
    }

    /// Packages installed as dependencies (`pacman -Qd`).
    pub fn query_dependencies(&self) -> Result<BTreeMap<String, String>, CommandError> {
        self.query_with(&["-Qd"])
    }

    /// Packages installed explicitly (`pacman -Qe`).
    pub fn query_explicit(&self) -> Result<BTreeMap<String, String>, CommandError> {
        self.query_with(&["-Qe"])
    }

    fn query_with(&self, args: &[&str]) -> Result<BTreeMap<String, String>, CommandError> {
        let mut cmd = self.pacman_command();
        cmd.args(args);
        query_packages(&mut cmd)
    }
}

/// Runs a `pacman -Q…` listing and parses its `NAME VERSION` lines.
///
/// pacman exits 1 when nothing matches (even plain `-Q` on an empty
/// database), so a silent exit 1 is an empty answer, not a failure.
pub fn query_packages(cmd: &mut Command) -> Result<BTreeMap<String, String>, CommandError> {
    let output = run_unchecked(cmd)?;
    let silent = output.stdout.is_empty() && output.stderr.is_empty();
    if !output.status.success() {
        return if output.status.code() == Some(1) && silent {
            Ok(BTreeMap::new())
        } else {
            Err(failed(cmd, output))
        };
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .map(|line| {
            line.split_once(' ')
                .map(|(name, version)| (name.to_owned(), version.to_owned()))
                .ok_or_else(|| CommandError::UnexpectedOutput {
                    command_line: command_line(cmd),
                    detail: format!("not `NAME VERSION`: {line:?}"),
                })
        })
        .collect()
}
