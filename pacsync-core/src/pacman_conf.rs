//! `pacman.conf` as pacman reads it, without touching the file system.
//!
//! The parser follows pacman 6.0.2's own code (`src/common/ini.c`,
//! `src/pacman/conf.c`) rather than a generic INI reader, because pacsync acts
//! on what pacman will do, and pacman's reader has quirks a generic one would
//! get wrong: list values split on spaces only (never tabs), `RootDir`,
//! `DBPath`, `GPGDir` and `LogFile` keep their *first* value while
//! `XferCommand` and `ParallelDownloads` keep their last, a section header
//! inside an included file stays in force after the `Include` returns, lines
//! longer than 4095 bytes are read as several lines, and `$arch` in a `Server`
//! line is the first `Architecture` value however late in the file that
//! appears. The conformance test in `tests/tests/pacman_conf_conformance.rs`
//! diffs every value against Debian's `pacman-conf`.
//!
//! Files are read through an [`IncludeSource`], so this crate stays free of
//! I/O; `pacsync-pacman` supplies the one backed by the file system.
//!
//! Where pacman only warns (an unknown directive, a flag given a value), the
//! parse goes on and records a [`ConfWarning`]: refusing a configuration that
//! pacman itself runs with would leave pacsync unable to manage the machine.
//! The directives pacman 7 added (`DownloadUser`, `DisableSandbox`,
//! `DisableSandboxFilesystem`, `DisableSandboxSyscalls`, and `CacheServer` in
//! a repository) are understood without a warning, although pacman 6 warns
//! about them; used wrongly (without a value, `$arch` and no `Architecture`)
//! they never fail the file, so nothing pacman 6 accepts is refused here.

mod error;
mod lines;
mod options;
mod parser;
mod siglevel;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use error::{ConfError, ConfWarning, WarningKind};
pub use siglevel::{SigCheck, SigLevel, SigPolicy, SigTrust};

/// How deep `Include`s may nest: the file named on the command line is depth
/// 0 and a file at depth 10 may not include another. This is pacman's own limit
/// (`config_max_recursion`), so a configuration pacman accepts is accepted here
/// and one it rejects is rejected.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// The hook directory libalpm always searches, relative to the root directory,
/// before the configured `HookDir`s. `pacman-conf` does not print it.
pub const SYSTEM_HOOK_DIR: &str = "usr/share/libalpm/hooks/";

/// Where the parser gets the text of the main file and of every `Include`.
pub trait IncludeSource {
    /// The bytes of the file at `path`. An `Err` carries the reason, e.g.
    /// "No such file or directory"; the parser names the file.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;

    /// The existing paths matching the glob(7) `pattern`, in any order (the
    /// parser sorts them byte-wise, as glob(3) does in the C locale). An empty
    /// list means no match; the parser then reads `pattern` itself, as pacman
    /// does, which normally fails with a read error.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String>;
}

/// A parsed `pacman.conf` with pacman's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacmanConf {
    pub options: Options,
    /// Repositories in file order. A name may occur twice, as `pacman-conf`
    /// lists it; pacman itself then fails to register the second one.
    pub repos: Vec<Repo>,
    /// What pacman would have warned about, in file order.
    pub warnings: Vec<ConfWarning>,
}

impl PacmanConf {
    /// The first repository called `name` (the one `pacman-conf --repo` shows).
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|repo| repo.name == name)
    }
}

/// The `[options]` section, every value as pacman uses it after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// `/` unless set.
    pub root_dir: String,
    /// `/var/lib/pacman/`, or `{RootDir}/var/lib/pacman/` when only `RootDir`
    /// is set.
    pub db_path: String,
    /// `[/var/cache/pacman/pkg/]` unless set; never prefixed with `RootDir`.
    pub cache_dirs: Vec<String>,
    /// `[/etc/pacman.d/hooks/]` unless set. libalpm also searches the system
    /// hook directory first: see [`Options::alpm_hook_dirs`].
    pub hook_dirs: Vec<String>,
    /// `/etc/pacman.d/gnupg/` unless set; never prefixed with `RootDir`.
    pub gpg_dir: String,
    /// `/var/log/pacman.log`, or `{RootDir}/var/log/pacman.log` when only
    /// `RootDir` is set.
    pub log_file: String,
    pub hold_pkg: Vec<String>,
    pub ignore_pkg: Vec<String>,
    pub ignore_group: Vec<String>,
    pub no_upgrade: Vec<String>,
    pub no_extract: Vec<String>,
    /// Every value in order, each `auto` replaced by the machine architecture;
    /// empty means no architecture check.
    pub architectures: Vec<String>,
    pub xfer_command: Option<String>,
    pub clean_method: CleanMethod,
    /// The default for repositories and for `-U`.
    pub sig_level: SigLevel,
    /// The `SigLevel` words as written, across all lines.
    pub sig_level_raw: Vec<String>,
    /// What `-U` of a local file checks: `sig_level` with
    /// `LocalFileSigLevel` applied on top.
    pub local_file_sig_level: SigLevel,
    pub local_file_sig_level_raw: Vec<String>,
    /// What `-U` of a URL checks: `sig_level` with `RemoteFileSigLevel`
    /// applied on top.
    pub remote_file_sig_level: SigLevel,
    pub remote_file_sig_level_raw: Vec<String>,
    /// 1 unless set.
    pub parallel_downloads: u32,
    pub use_syslog: bool,
    pub color: bool,
    pub no_progress_bar: bool,
    pub check_space: bool,
    pub verbose_pkg_lists: bool,
    pub i_love_candy: bool,
    pub disable_download_timeout: bool,
    /// pacman 7: the user downloads run as.
    pub download_user: Option<String>,
    /// pacman 7.0: no download sandbox at all.
    pub disable_sandbox: bool,
    /// pacman 7.1: no Landlock file system restrictions.
    pub disable_sandbox_filesystem: bool,
    /// pacman 7.1: no seccomp filter.
    pub disable_sandbox_syscalls: bool,
}

impl Default for Options {
    /// What pacman uses for an empty `[options]` section.
    fn default() -> Self {
        options::OptionsBuilder::default().finish()
    }
}

impl Options {
    /// The architecture `$arch` stands for: the first `Architecture` value.
    pub fn architecture(&self) -> Option<&str> {
        self.architectures.first().map(String::as_str)
    }

    /// Every directory libalpm reads hooks from, in order: the system hook
    /// directory under the root, then the configured ones (later ones win).
    /// libalpm resolves the root with realpath(3) first; this only makes sure
    /// it ends with a slash.
    pub fn alpm_hook_dirs(&self) -> Vec<String> {
        let mut root = self.root_dir.clone();
        if !root.ends_with('/') {
            root.push('/');
        }
        let mut dirs = vec![format!("{root}{SYSTEM_HOOK_DIR}")];
        dirs.extend(self.hook_dirs.iter().cloned());
        dirs
    }
}

/// One repository section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    pub name: String,
    /// `Server` URLs in order, `$arch` and `$repo` replaced. Any other
    /// `$word` stays as written, so `$arch_v3` becomes `x86_64_v3`.
    pub servers: Vec<String>,
    /// pacman 7 `CacheServer` URLs, replaced like `servers`.
    pub cache_servers: Vec<String>,
    /// The levels this repository checks: the `[options]` `SigLevel` with this
    /// section's `SigLevel` applied on top.
    pub sig_level: SigLevel,
    /// This section's `SigLevel` words as written; empty when it inherits.
    pub sig_level_raw: Vec<String>,
    pub usage: Usage,
}

/// What a repository is used for (`Usage`); everything unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub sync: bool,
    pub search: bool,
    pub install: bool,
    pub upgrade: bool,
}

impl Usage {
    pub const ALL: Usage = Usage {
        sync: true,
        search: true,
        install: true,
        upgrade: true,
    };

    pub fn is_all(self) -> bool {
        self == Usage::ALL
    }
}

impl Default for Usage {
    fn default() -> Self {
        Usage::ALL
    }
}

/// Which packages `pacman -Sc` keeps (`CleanMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CleanMethod {
    pub keep_installed: bool,
    pub keep_current: bool,
}

impl Default for CleanMethod {
    /// `KeepInstalled`, pacman's default.
    fn default() -> Self {
        CleanMethod {
            keep_installed: true,
            keep_current: false,
        }
    }
}

/// Parse the `pacman.conf` at `path` and everything it includes.
///
/// `machine_arch` replaces `Architecture = auto`; pacman takes it from
/// uname(2) (`pacsync_pacman::conf::machine_arch` reads it the same way).
/// Never panics, whatever the bytes.
pub fn parse(
    path: &str,
    source: &dyn IncludeSource,
    machine_arch: &str,
) -> Result<PacmanConf, ConfError> {
    parser::Parser::new(source, machine_arch).run(path)
}
