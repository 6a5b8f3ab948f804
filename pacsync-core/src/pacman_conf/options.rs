//! The `[options]` values as read, and pacman's `setdefaults()` for them.

use super::lines;
use super::siglevel::{SigBits, SigLevel};
use super::{CleanMethod, Options};

/// `[options]` as the file gave it: `None` or empty where unset.
#[derive(Debug, Default)]
pub(super) struct OptionsBuilder {
    pub(super) root_dir: Option<String>,
    pub(super) db_path: Option<String>,
    pub(super) cache_dirs: Vec<String>,
    pub(super) hook_dirs: Vec<String>,
    pub(super) gpg_dir: Option<String>,
    pub(super) log_file: Option<String>,
    pub(super) hold_pkg: Vec<String>,
    pub(super) ignore_pkg: Vec<String>,
    pub(super) ignore_group: Vec<String>,
    pub(super) no_upgrade: Vec<String>,
    pub(super) no_extract: Vec<String>,
    pub(super) architectures: Vec<String>,
    pub(super) xfer_command: Option<String>,
    pub(super) keep_installed: bool,
    pub(super) keep_current: bool,
    pub(super) sig_level: Option<SigBits>,
    pub(super) sig_level_raw: Vec<String>,
    pub(super) local_file_sig_level: Option<SigBits>,
    pub(super) local_file_sig_level_raw: Vec<String>,
    pub(super) remote_file_sig_level: Option<SigBits>,
    pub(super) remote_file_sig_level_raw: Vec<String>,
    pub(super) parallel_downloads: Option<u32>,
    pub(super) use_syslog: bool,
    pub(super) color: bool,
    pub(super) no_progress_bar: bool,
    pub(super) check_space: bool,
    pub(super) verbose_pkg_lists: bool,
    pub(super) i_love_candy: bool,
    pub(super) disable_download_timeout: bool,
    pub(super) download_user: Option<String>,
    pub(super) disable_sandbox: bool,
    pub(super) disable_sandbox_filesystem: bool,
    pub(super) disable_sandbox_syscalls: bool,
}

impl OptionsBuilder {
    /// pacman's `setdefaults()` for `[options]`.
    pub(super) fn finish(self) -> Options {
        // pacman builds these with snprintf into a PATH_MAX buffer.
        let under_root = |root: &str, rel: &str| {
            let joined = format!("{root}/{rel}");
            let bytes = &joined.as_bytes()[..joined.len().min(lines::CHUNK_MAX)];
            String::from_utf8_lossy(bytes).into_owned()
        };
        let (root_dir, db_path, log_file) = match self.root_dir {
            Some(root) => {
                let db = self
                    .db_path
                    .unwrap_or_else(|| under_root(&root, "var/lib/pacman/"));
                let log = self
                    .log_file
                    .unwrap_or_else(|| under_root(&root, "var/log/pacman.log"));
                (root, db, log)
            }
            None => (
                "/".to_owned(),
                self.db_path
                    .unwrap_or_else(|| "/var/lib/pacman/".to_owned()),
                self.log_file
                    .unwrap_or_else(|| "/var/log/pacman.log".to_owned()),
            ),
        };
        let or_default = |list: Vec<String>, default: &str| {
            if list.is_empty() {
                vec![default.to_owned()]
            } else {
                list
            }
        };
        let sig = self.sig_level.unwrap_or(SigBits::OPTIONS_DEFAULT).bits();
        let file_sig =
            |bits: Option<SigBits>| SigLevel::from_bits(bits.unwrap_or(SigBits::INHERIT).over(sig));
        Options {
            root_dir,
            db_path,
            cache_dirs: or_default(self.cache_dirs, "/var/cache/pacman/pkg/"),
            hook_dirs: or_default(self.hook_dirs, "/etc/pacman.d/hooks/"),
            gpg_dir: self
                .gpg_dir
                .unwrap_or_else(|| "/etc/pacman.d/gnupg/".to_owned()),
            log_file,
            hold_pkg: self.hold_pkg,
            ignore_pkg: self.ignore_pkg,
            ignore_group: self.ignore_group,
            no_upgrade: self.no_upgrade,
            no_extract: self.no_extract,
            architectures: self.architectures,
            xfer_command: self.xfer_command,
            clean_method: if self.keep_installed || self.keep_current {
                CleanMethod {
                    keep_installed: self.keep_installed,
                    keep_current: self.keep_current,
                }
            } else {
                CleanMethod::default()
            },
            sig_level: SigLevel::from_bits(sig),
            sig_level_raw: self.sig_level_raw,
            local_file_sig_level: file_sig(self.local_file_sig_level),
            local_file_sig_level_raw: self.local_file_sig_level_raw,
            remote_file_sig_level: file_sig(self.remote_file_sig_level),
            remote_file_sig_level_raw: self.remote_file_sig_level_raw,
            parallel_downloads: self.parallel_downloads.unwrap_or(1),
            use_syslog: self.use_syslog,
            color: self.color,
            no_progress_bar: self.no_progress_bar,
            check_space: self.check_space,
            verbose_pkg_lists: self.verbose_pkg_lists,
            i_love_candy: self.i_love_candy,
            disable_download_timeout: self.disable_download_timeout,
            download_user: self.download_user,
            disable_sandbox: self.disable_sandbox,
            disable_sandbox_filesystem: self.disable_sandbox_filesystem,
            disable_sandbox_syscalls: self.disable_sandbox_syscalls,
        }
    }
}
