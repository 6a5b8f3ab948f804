//! The small office of the end-to-end scenarios and the demo: two
//! repositories of real package files and three machines that start out
//! different.
//!
//! - `core`: filesystem, bash 5.2-2, openssl 3.3-1, vim 9.1-1 (needs
//!   openssl), htop, nano, rsync; `extra`: firefox.
//! - Files no repository database lists (as in an old cache or a local
//!   build): bash 5.1-1, openssl 3.2-1, vim 9.2-1.
//! - **alpha**, the richer machine: filesystem, bash 5.2-2, openssl 3.2-1
//!   (dependency), vim 9.1-1, htop, firefox.
//! - **bravo**: filesystem, bash 5.1-1 (older), openssl 3.3-1 (newer, a
//!   dependency), htop installed as a dependency, nano (extra); no vim, no
//!   firefox. Its cache also holds openssl 3.2-1 and bash 5.1-1.
//! - **charlie**: like alpha without htop and firefox.
//!
//! With alpha's state as the target, bravo's plan holds every kind of step
//! (install, upgrade, downgrade, removal, reason change) and both others are
//! `behind`.

use std::path::PathBuf;

use anyhow::Context;

use crate::package::PackageSpec;
use crate::repo::Repo;
use crate::sandbox::Sandbox;
use crate::scratch::ScratchDir;

/// The packages of the office, in the repositories or beside them.
#[derive(Debug)]
pub struct Office {
    pub core: Repo,
    pub extra: Repo,
    loose: ScratchDir,
}

pub fn spec(name: &str, version: &str) -> PackageSpec {
    let spec = PackageSpec::new(name, version)
        .file(format!("usr/share/{name}/version"), version.as_bytes());
    if name == "vim" {
        spec.depends(["openssl"])
    } else {
        spec
    }
}

/// name → version of alpha's packages: the office's first target.
pub const ALPHA: [(&str, &str); 6] = [
    ("bash", "5.2-2"),
    ("filesystem", "2024.1-1"),
    ("firefox", "130.0-1"),
    ("htop", "3.3-1"),
    ("openssl", "3.2-1"),
    ("vim", "9.1-1"),
];

impl Office {
    pub fn new() -> anyhow::Result<Office> {
        let core = Repo::new("core")?;
        core.add(&[
            spec("filesystem", "2024.1-1"),
            spec("bash", "5.2-2"),
            spec("openssl", "3.3-1"),
            spec("vim", "9.1-1"),
            spec("htop", "3.3-1"),
            spec("nano", "8.0-1"),
            spec("rsync", "3.2.7-1"),
        ])?;
        let extra = Repo::new("extra")?;
        extra.add(&[spec("firefox", "130.0-1")])?;
        let loose = ScratchDir::new("pacsync-office-files")?;
        for (name, version) in [("bash", "5.1-1"), ("openssl", "3.2-1"), ("vim", "9.2-1")] {
            spec(name, version).build(loose.path())?;
        }
        Ok(Office { core, extra, loose })
    }

    /// A package file no repository database lists.
    pub fn loose_file(&self, name: &str, version: &str) -> PathBuf {
        self.loose.path().join(spec(name, version).filename())
    }

    fn sandbox(&self) -> anyhow::Result<Sandbox> {
        let sandbox = Sandbox::new(&[&self.core, &self.extra])?;
        sandbox.sync_dbs()?;
        Ok(sandbox)
    }

    /// Put a loose file into the sandbox's pacman cache.
    fn cache(&self, sandbox: &Sandbox, name: &str, version: &str) -> anyhow::Result<()> {
        let file = self.loose_file(name, version);
        let to = sandbox.cache_dir().join(spec(name, version).filename());
        std::fs::copy(&file, &to).with_context(|| format!("copying {}", file.display()))?;
        Ok(())
    }

    pub fn alpha(&self) -> anyhow::Result<Sandbox> {
        let s = self.sandbox()?;
        s.install_files(&[self.loose_file("openssl", "3.2-1")])?;
        s.set_reason("openssl", true)?;
        s.install(&["filesystem", "bash", "vim", "htop", "firefox"])?;
        Ok(s)
    }

    pub fn bravo(&self) -> anyhow::Result<Sandbox> {
        let s = self.sandbox()?;
        s.install_files(&[self.loose_file("bash", "5.1-1")])?;
        s.install(&["filesystem", "openssl", "htop", "nano"])?;
        s.set_reason("openssl", true)?;
        s.set_reason("htop", true)?;
        self.cache(&s, "bash", "5.1-1")?;
        self.cache(&s, "openssl", "3.2-1")?;
        Ok(s)
    }

    pub fn charlie(&self) -> anyhow::Result<Sandbox> {
        let s = self.sandbox()?;
        s.install_files(&[self.loose_file("openssl", "3.2-1")])?;
        s.set_reason("openssl", true)?;
        s.install(&["filesystem", "bash", "vim"])?;
        Ok(s)
    }
}

/// Take a repository out of a sandbox's pacman.conf, as an admin who
/// disables it would.
pub fn drop_repository(sandbox: &Sandbox, name: &str) -> anyhow::Result<()> {
    let path = sandbox.config_path();
    let conf = std::fs::read_to_string(path)?;
    let header = format!("[{name}]");
    let mut out = String::new();
    let mut skipping = false;
    for line in conf.lines() {
        if line.starts_with('[') {
            skipping = line == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(path, out)?;
    Ok(())
}
