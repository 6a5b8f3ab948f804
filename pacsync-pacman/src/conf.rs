//! `pacman.conf` from the file system, read the way pacman reads it.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use pacsync_core::pacman_conf::{self, ConfError, IncludeSource, PacmanConf};

/// Reads files and expands `Include` globs on the real file system.
///
/// Relative paths resolve against the working directory, as in pacman.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsIncludeSource;

impl IncludeSource for FsIncludeSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        match fs::read(path) {
            Ok(bytes) => Ok(bytes),
            // pacman's fopen(3) opens a directory and its first fgets(3)
            // fails, which it takes for the end of an empty file.
            Err(err) if err.kind() == io::ErrorKind::IsADirectory => Ok(Vec::new()),
            Err(err) => Err(err.to_string()),
        }
    }

    /// glob(3) as pacman calls it: `*`, `?` and `[...]` within one path
    /// component, no match for a leading dot unless written. Unlike glob(3),
    /// a backslash does not escape and `**` crosses directories (the `glob`
    /// crate's syntax); pacman.conf files in the wild use neither.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        // A pattern glob(3) would take literally (an unclosed `[`) matches
        // nothing here, so the parser reads it literally too.
        let Ok(paths) = glob::glob_with(pattern, options) else {
            return Ok(Vec::new());
        };
        Ok(paths
            // glob(3) without GLOB_ERR skips directories it cannot read.
            .filter_map(Result::ok)
            // A name that is not UTF-8 cannot be represented; the lossy name
            // then fails to read, so the include fails loudly, not silently.
            .map(|path| path.to_string_lossy().into_owned())
            .collect())
    }
}

/// Parse the `pacman.conf` at `path` and its `Include`s.
///
/// `machine_arch` replaces `Architecture = auto`; pass [`machine_arch`] for
/// this machine's.
pub fn load_pacman_conf(path: &Path, machine_arch: &str) -> Result<PacmanConf, ConfError> {
    let Some(path) = path.to_str() else {
        return Err(ConfError::Read {
            file: path.to_string_lossy().into_owned(),
            message: "the path is not valid UTF-8".to_owned(),
        });
    };
    pacman_conf::parse(path, &FsIncludeSource, machine_arch)
}

/// The architecture pacman puts in for `Architecture = auto`: the `machine`
/// field of uname(2) (what `uname -m` prints).
///
/// Read from `/proc/sys/kernel/arch`, the same string without `unsafe` or a
/// child process; kernels before 6.1 lack that file, so `uname -m` is the
/// fallback. `std::env::consts::ARCH` is no substitute: it names the target
/// pacsync was compiled for, e.g. `x86` where uname says `i686` and `arm`
/// where it says `armv7l`. A personality set with setarch(8) changes what
/// uname(2) returns but not the /proc file; nobody runs pacman that way.
pub fn machine_arch() -> io::Result<String> {
    if let Ok(arch) = fs::read_to_string("/proc/sys/kernel/arch") {
        let arch = arch.trim();
        if !arch.is_empty() {
            return Ok(arch.to_owned());
        }
    }
    let output = Command::new("uname").arg("-m").output()?;
    let arch = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || arch.is_empty() {
        return Err(io::Error::other(format!(
            "`uname -m` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_includes_from_disk() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("pacsync-conf-{}", std::process::id()));
        fs::create_dir_all(dir.join("conf.d/empty-dir.conf"))?;
        let d = dir.to_str().ok_or("temp dir is not UTF-8")?;
        fs::write(
            dir.join("pacman.conf"),
            format!("[options]\nArchitecture = auto\nInclude = {d}/conf.d/*.conf\n"),
        )?;
        fs::write(
            dir.join("conf.d/b.conf"),
            "[b]\nServer = file:///$repo/$arch\n",
        )?;
        fs::write(dir.join("conf.d/a.conf"), "[a]\n")?;
        fs::write(dir.join("conf.d/.hidden.conf"), "[hidden]\n")?;
        let arch = machine_arch()?;
        let conf = load_pacman_conf(&dir.join("pacman.conf"), &arch);
        fs::remove_dir_all(&dir)?;
        let conf = conf?;
        let names: Vec<&str> = conf.repos.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(conf.repos[1].servers, [format!("file:///b/{arch}")]);
        assert_eq!(conf.options.architectures, [arch]);
        Ok(())
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load_pacman_conf(Path::new("/nonexistent/pacman.conf"), "x86_64");
        assert!(matches!(
            err,
            Err(ConfError::Read { ref file, .. }) if file == "/nonexistent/pacman.conf"
        ));
    }
}
