//! Carrying out a sync plan with pacman, all or nothing as far as pacman
//! allows.
//!
//! Order: resolve every package file (sync repository at the exact version,
//! else the pacman cache, else the server's package archive, downloaded and
//! hash-checked by [`crate::archive`]) → stop, naming what is
//! missing, if any file cannot be had → let pacman resolve the whole `-U`
//! transaction without committing it (`--print`) → one `-U` transaction for
//! every install, upgrade, downgrade and reinstall → one `-R` for removals
//! (after the upgrades, which may drop the dependencies that kept them) →
//! `-D` for install reasons. Cancel is honoured until the first transaction
//! starts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pacsync_core::package::InstallReason;
use pacsync_core::plan::{Action, SyncPlan};

use crate::machine::MachineSnapshot;
use crate::pacman::{Pacman, PacmanError, Step};

/// Where each package file needed by a plan comes from.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Paths or URLs, in plan order, for the `-U` transaction.
    pub files: Vec<String>,
    /// `name version` of every file no source has, with why when known.
    pub missing: Vec<String>,
    /// `(name, version)` of every file no source has.
    pub wanted: Vec<(String, String)>,
}

impl Resolution {
    /// Adds why each missing file could not be had.
    pub fn explain(&mut self, why: &HashMap<(String, String), String>) {
        for (label, key) in self.missing.iter_mut().zip(&self.wanted) {
            if let Some(reason) = why.get(key) {
                label.push_str(&format!(" ({reason})"));
            }
        }
    }
}

/// Find every file the plan's installs need. `from_server` maps
/// `(name, version)` to a file fetched from the server's package archive.
pub fn resolve(
    plan: &SyncPlan,
    machine: &MachineSnapshot,
    from_server: &HashMap<(String, String), String>,
) -> Resolution {
    let cached = index_cache(&machine.paths.cache_dirs);
    let mut out = Resolution::default();
    for step in &plan.steps {
        let Some(version) = step.target.as_ref() else {
            continue;
        };
        if matches!(step.action, Action::Remove | Action::ChangeReason) {
            continue;
        }
        let from_repo = machine.repos.iter().find_map(|repo| {
            let entry = repo.entries.get(&step.name)?;
            if &entry.version != version {
                return None;
            }
            let server = repo.servers.first()?;
            Some(join_url(server, &entry.filename))
        });
        let key = (step.name.clone(), version.to_string());
        let source = from_repo
            .or_else(|| cached.get(&key).map(|p| p.display().to_string()))
            .or_else(|| from_server.get(&key).cloned());
        match source {
            Some(s) => out.files.push(s),
            None => {
                out.missing.push(format!("{} {}", step.name, version));
                out.wanted.push(key);
            }
        }
    }
    out
}

/// A `file://` server becomes a plain path (pacman reads it directly);
/// anything else stays a URL for pacman to download.
fn join_url(server: &str, filename: &str) -> String {
    let joined = format!("{}/{}", server.trim_end_matches('/'), filename);
    match joined.strip_prefix("file://") {
        Some(path) => path.to_owned(),
        None => joined,
    }
}

/// `(name, version)` → file for every package file in the cache directories.
pub(crate) fn index_cache(dirs: &[PathBuf]) -> HashMap<(String, String), PathBuf> {
    let mut index = HashMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_package_filename)
            {
                index.entry(key).or_insert(path);
            }
        }
    }
    index
}

/// `NAME-PKGVER-PKGREL-ARCH.pkg.tar.EXT` → `(NAME, PKGVER-PKGREL)`.
fn parse_package_filename(file: &str) -> Option<(String, String)> {
    if file.ends_with(".sig") || file.ends_with(".part") {
        return None;
    }
    let stem = &file[..file.find(".pkg.tar")?];
    let mut parts = stem.rsplitn(4, '-');
    let _arch = parts.next()?;
    let rel = parts.next()?;
    let ver = parts.next()?;
    let name = parts.next()?;
    Some((name.to_owned(), format!("{ver}-{rel}")))
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("package files missing from every source (sync repositories, pacman cache, server archive): {}; nothing was changed", .0.join(", "))]
    Missing(Vec<String>),
    #[error("cancelled before pacman started; nothing was changed")]
    Cancelled,
    #[error("pacman refused the transaction; nothing was changed: {0}")]
    Refused(PacmanError),
    #[error("{0}")]
    Pacman(PacmanError),
}

/// Progress as (phase, percent, message).
pub type ProgressFn<'a> = dyn FnMut(&str, u32, &str) + Send + 'a;

/// Set from another task to stop an operation before its first transaction.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Carry out `plan`; see the module documentation for the order.
pub async fn apply(
    plan: &SyncPlan,
    resolution: &Resolution,
    pacman: &Pacman,
    cancel: &CancelFlag,
    progress: &mut ProgressFn<'_>,
) -> Result<(), ApplyError> {
    if !resolution.missing.is_empty() {
        return Err(ApplyError::Missing(resolution.missing.clone()));
    }
    let removals: Vec<String> = plan
        .with_action(Action::Remove)
        .map(|s| s.name.clone())
        .collect();
    let reasons = |want: InstallReason| -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.set_reason == Some(want))
            .map(|s| s.name.clone())
            .collect()
    };
    let (as_deps, as_explicit) = (
        reasons(InstallReason::Dependency),
        reasons(InstallReason::Explicit),
    );

    if !resolution.files.is_empty() {
        progress("checking", 2, "resolving the transaction");
        pacman
            .check_upgrade(&resolution.files)
            .await
            .map_err(ApplyError::Refused)?;
    }
    if cancel.is_cancelled() {
        return Err(ApplyError::Cancelled);
    }
    if !resolution.files.is_empty() {
        let mut on_step = |s: Step| {
            let pct = 5 + 75 * s.index.min(s.total) / s.total.max(1);
            progress("installing", pct, &s.text);
        };
        pacman
            .upgrade(&resolution.files, &mut on_step)
            .await
            .map_err(ApplyError::Pacman)?;
    }
    if !removals.is_empty() {
        let mut on_step = |s: Step| {
            let pct = 80 + 15 * s.index.min(s.total) / s.total.max(1);
            progress("removing", pct, &s.text);
        };
        pacman
            .remove(&removals, &mut on_step)
            .await
            .map_err(ApplyError::Pacman)?;
    }
    progress("reasons", 96, "setting install reasons");
    if !as_deps.is_empty() {
        pacman
            .mark(&as_deps, true)
            .await
            .map_err(ApplyError::Pacman)?;
    }
    if !as_explicit.is_empty() {
        pacman
            .mark(&as_explicit, false)
            .await
            .map_err(ApplyError::Pacman)?;
    }
    progress("done", 100, "finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_filenames() {
        assert_eq!(
            parse_package_filename("iptables-1:1.8.2-1-x86_64.pkg.tar.xz"),
            Some(("iptables".into(), "1:1.8.2-1".into()))
        );
        assert_eq!(
            parse_package_filename("lib32-gcc-libs-8.2.1+20181127-1-x86_64.pkg.tar.zst"),
            Some(("lib32-gcc-libs".into(), "8.2.1+20181127-1".into()))
        );
        assert_eq!(parse_package_filename("foo-1-1-any.pkg.tar.zst.sig"), None);
        assert_eq!(parse_package_filename("readme.txt"), None);
    }

    #[test]
    fn file_servers_become_paths() {
        assert_eq!(
            join_url("file:///srv/repo/", "a.pkg.tar.zst"),
            "/srv/repo/a.pkg.tar.zst"
        );
        assert_eq!(
            join_url("https://m.example/core/os/x86_64", "a.pkg.tar.zst"),
            "https://m.example/core/os/x86_64/a.pkg.tar.zst"
        );
    }
}
