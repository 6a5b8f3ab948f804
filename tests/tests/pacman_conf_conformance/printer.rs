//! `pacman-conf`'s output format, for comparing our parse with it.

use std::fmt::Write as _;

use pacsync_core::pacman_conf::{PacmanConf, Repo, SigCheck, SigLevel, SigTrust};

/// `pacman-conf`'s output, written from our parse (its `dump_config`,
/// `dump_repo` and `list_repos`, in verbose form).
#[derive(Default)]
pub struct Printer(pub String);

impl Printer {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn value(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.0, "{key} = {value}");
    }

    fn list(&mut self, key: &str, values: &[String]) {
        for value in values {
            self.value(key, value);
        }
    }

    fn flag(&mut self, key: &str, on: bool) {
        if on {
            self.line(key);
        }
    }

    fn sig_level(&mut self, key: &str, level: &SigLevel, package_only: bool) {
        let mut policies = vec![("Package", level.package)];
        if !package_only {
            policies.push(("Database", level.database));
        }
        for (prefix, policy) in policies {
            let check = match policy.check {
                SigCheck::Never => {
                    self.value(key, &format!("{prefix}Never"));
                    continue;
                }
                SigCheck::Optional => "Optional",
                SigCheck::Required => "Required",
            };
            self.value(key, &format!("{prefix}{check}"));
            let trust = match policy.trust {
                SigTrust::TrustAll => "TrustAll",
                SigTrust::TrustedOnly => "TrustedOnly",
            };
            self.value(key, &format!("{prefix}{trust}"));
        }
    }

    pub fn repo(&mut self, repo: &Repo) {
        let usage = repo.usage;
        if usage.is_all() {
            self.value("Usage", "All");
        } else {
            for (on, word) in [
                (usage.sync, "Sync"),
                (usage.search, "Search"),
                (usage.install, "Install"),
                (usage.upgrade, "Upgrade"),
            ] {
                if on {
                    self.value("Usage", word);
                }
            }
        }
        if !repo.sig_level_raw.is_empty() {
            self.sig_level("SigLevel", &repo.sig_level, false);
        }
        self.list("Server", &repo.servers);
    }

    pub fn dump(&mut self, conf: &PacmanConf) {
        let o = &conf.options;
        self.line("[options]");
        self.value("RootDir", &o.root_dir);
        self.value("DBPath", &o.db_path);
        self.list("CacheDir", &o.cache_dirs);
        self.list("HookDir", &o.hook_dirs);
        self.value("GPGDir", &o.gpg_dir);
        self.value("LogFile", &o.log_file);
        self.list("HoldPkg", &o.hold_pkg);
        self.list("IgnorePkg", &o.ignore_pkg);
        self.list("IgnoreGroup", &o.ignore_group);
        self.list("NoUpgrade", &o.no_upgrade);
        self.list("NoExtract", &o.no_extract);
        self.list("Architecture", &o.architectures);
        if let Some(command) = &o.xfer_command {
            self.value("XferCommand", command);
        }
        self.flag("UseSyslog", o.use_syslog);
        self.flag("Color", o.color);
        self.flag("CheckSpace", o.check_space);
        self.flag("VerbosePkgLists", o.verbose_pkg_lists);
        self.flag("DisableDownloadTimeout", o.disable_download_timeout);
        self.flag("ILoveCandy", o.i_love_candy);
        self.flag("NoProgressBar", o.no_progress_bar);
        self.value("ParallelDownloads", &o.parallel_downloads.to_string());
        if o.clean_method.keep_installed {
            self.value("CleanMethod", "KeepInstalled");
        }
        if o.clean_method.keep_current {
            self.value("CleanMethod", "KeepCurrent");
        }
        self.sig_level("SigLevel", &o.sig_level, false);
        if !o.local_file_sig_level_raw.is_empty() {
            self.sig_level("LocalFileSigLevel", &o.local_file_sig_level, true);
        }
        if !o.remote_file_sig_level_raw.is_empty() {
            self.sig_level("RemoteFileSigLevel", &o.remote_file_sig_level, true);
        }
        for repo in &conf.repos {
            self.line(&format!("[{}]", repo.name));
            self.repo(repo);
        }
    }
}
