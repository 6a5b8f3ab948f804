//! Preconditions of tests that need real system parts.
//!
//! A developer without pacman (or without root) sees the test skip with a
//! reason; CI must run everything, so there a missing part is a failure.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Whether `binary` is on `PATH`. Missing: panics under `CI`, otherwise
/// prints `SKIPPED: <test> needs <binary>` and returns false.
pub fn require_binary(binary: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(binary)))
    });
    proceed_or_skip(found, &format!("the `{binary}` binary on PATH"))
}

/// Whether we run as root (pacman's -S/-U/-R/-D refuse anyone else).
/// Not root: panics under `CI`, otherwise prints a skip reason and returns
/// false.
pub fn require_root() -> bool {
    // /proc/self belongs to the effective uid; this avoids libc (and unsafe).
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    proceed_or_skip(root, "root (pacman transactions need uid 0)")
}

/// Everything a [`crate::Sandbox`] with [`crate::Repo`]s needs: pacman,
/// repo-add (and the bsdtar it runs), and root.
pub fn require_pacman_sandbox() -> bool {
    ["pacman", "repo-add", "repo-remove", "bsdtar"]
        .into_iter()
        .all(require_binary)
        && require_root()
}

/// Whether the file at `path` exists (a helper outside `PATH`, such as
/// polkitd). Missing: fails under `CI`, skips elsewhere.
pub fn require_path(path: &str) -> bool {
    proceed_or_skip(Path::new(path).exists(), &format!("`{path}`"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn proceed_or_skip(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs {what}, and CI is set: CI must run every test"
    );
    eprintln!("SKIPPED: {test} needs {what}");
    false
}
