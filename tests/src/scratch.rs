//! Temporary directories that a failing test can leave behind for inspection.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::TempDir;

/// Set to `1` to keep the directories of a test that panics.
pub const KEEP_ENV: &str = "PACSYNC_KEEP_SANDBOX";

/// A unique temporary directory, removed on drop unless the thread is
/// panicking and `PACSYNC_KEEP_SANDBOX=1`: then it stays and its path is
/// printed, so the pacman root of a failed test can be looked at.
#[derive(Debug)]
pub struct ScratchDir {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> anyhow::Result<ScratchDir> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("creating a temporary directory")?;
        let path = dir.path().to_path_buf();
        Ok(ScratchDir {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        if keep
            && std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let path = dir.keep();
            eprintln!("{KEEP_ENV}=1: kept {}", path.display());
        }
    }
}
