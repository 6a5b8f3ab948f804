//! Which pacman this machine runs: 6.x (Debian's, in tests) or 7.x (Arch
//! today, with `DownloadUser` and sandboxed downloads).
//!
//! Nothing here reads text that differs between the two: the version
//! comes from the two `v<digits>` words of `pacman --version` (pacman's
//! own and libalpm's), which both print in the same place of the same
//! banner; `DownloadUser` comes from `pacman-conf`, which applies pacman's
//! own Include and defaults, and is told apart from pacman 6's "unknown
//! directive" by the exit status alone.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

/// A `major.minor.patch` version; what follows the numbers (`.r3.gabc`,
/// `-1`) is ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    fn parse(word: &str) -> Option<Release> {
        let digits = word.strip_prefix('v')?;
        let mut parts = digits.split(['.', '-']).map(|p| {
            let n: String = p.chars().take_while(char::is_ascii_digit).collect();
            n.parse::<u32>().ok()
        });
        let major = parts.next()??;
        Some(Release {
            major,
            minor: parts.next().flatten().unwrap_or(0),
            patch: parts.next().flatten().unwrap_or(0),
        })
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the daemon knows about the installed pacman.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacmanInfo {
    pub pacman: Release,
    pub libalpm: Release,
    /// pacman 7's unprivileged download user, when configured.
    pub download_user: Option<String>,
}

impl PacmanInfo {
    /// The two version words of `pacman --version`, pacman's first.
    pub fn parse_version(output: &str) -> Option<(Release, Release)> {
        let mut releases = output
            .split_whitespace()
            .filter(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
            .filter_map(Release::parse);
        Some((releases.next()?, releases.next()?))
    }

    /// pacman 7 downloads as `DownloadUser` in a sandbox; files the daemon
    /// hands to `pacman -U` by path are read by pacman itself, as root.
    pub fn sandboxed_downloads(&self) -> bool {
        self.pacman.major >= 7 && self.download_user.is_some()
    }
}

/// Ask the installed pacman. `None` when `pacman --version` cannot be run
/// or read: the daemon still works, it only cannot say which pacman it is.
pub async fn detect(binary: &Path, config: &Path) -> Option<PacmanInfo> {
    let out = Command::new(binary)
        .arg("--version")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let (pacman, libalpm) = PacmanInfo::parse_version(&String::from_utf8_lossy(&out.stdout))?;
    // pacman-conf sits next to pacman.
    let conf_binary = binary.with_file_name("pacman-conf");
    let conf_binary = if binary.components().count() > 1 {
        conf_binary.as_path()
    } else {
        Path::new("pacman-conf")
    };
    let download_user = Command::new(conf_binary)
        .arg("--config")
        .arg(config)
        .arg("DownloadUser")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let user = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            (!user.is_empty()).then_some(user)
        });
    Some(PacmanInfo {
        pacman,
        libalpm,
        download_user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(major: u32, minor: u32, patch: u32) -> Release {
        Release {
            major,
            minor,
            patch,
        }
    }

    // Captured from the pacman binaries named.
    const PACMAN_6_0_2: &str = "\n .--.                  Pacman v6.0.2 - libalpm v13.0.2\n/ _.-' .-.  .-.  .-.   Copyright (C) 2006-2021 Pacman Development Team\n\\  '-. '-'  '-'  '-'   Copyright (C) 2002-2006 Judd Vinet\n '--'\n                       This program may be freely redistributed under\n                       the terms of the GNU General Public License.\n\n";
    const PACMAN_7_0_0: &str = "\n .--.                  Pacman v7.0.0 - libalpm v15.0.0\n/ _.-' .-.  .-.  .-.   Copyright (C) 2006-2024 Pacman Development Team\n\\  '-. '-'  '-'  '-'   Copyright (C) 2002-2006 Judd Vinet\n '--'\n                       This program may be freely redistributed under\n                       the terms of the GNU General Public License.\n\n";
    const PACMAN_GIT: &str =
        " .--.                  Pacman v7.0.0.r38.g5ddb7a6 - libalpm v15.0.0\n";

    #[test]
    fn versions_of_pacman_6_and_7() {
        assert_eq!(
            PacmanInfo::parse_version(PACMAN_6_0_2),
            Some((release(6, 0, 2), release(13, 0, 2)))
        );
        assert_eq!(
            PacmanInfo::parse_version(PACMAN_7_0_0),
            Some((release(7, 0, 0), release(15, 0, 0)))
        );
        assert_eq!(
            PacmanInfo::parse_version(PACMAN_GIT),
            Some((release(7, 0, 0), release(15, 0, 0)))
        );
        assert_eq!(PacmanInfo::parse_version("pacman: command not found"), None);
        assert_eq!(PacmanInfo::parse_version(""), None);
    }

    #[test]
    fn sandboxed_downloads_need_pacman_7_and_a_download_user() {
        let mut info = PacmanInfo {
            pacman: release(7, 0, 0),
            libalpm: release(15, 0, 0),
            download_user: Some("alpm".into()),
        };
        assert!(info.sandboxed_downloads());
        info.download_user = None;
        assert!(!info.sandboxed_downloads());
        info.pacman = release(6, 0, 2);
        info.download_user = Some("alpm".into());
        assert!(!info.sandboxed_downloads());
    }

    #[tokio::test]
    async fn the_installed_pacman_is_recognised() {
        let Ok(path) = which("pacman") else {
            eprintln!("SKIPPED: no pacman on PATH");
            return;
        };
        let info = detect(&path, Path::new("/etc/pacman.conf"))
            .await
            .expect("pacman --version is readable");
        assert!(info.pacman.major >= 6, "{info:?}");
        assert!(info.libalpm.major >= 13, "{info:?}");
        if info.pacman.major < 7 {
            assert_eq!(info.download_user, None, "pacman 6 has no DownloadUser");
        }
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
