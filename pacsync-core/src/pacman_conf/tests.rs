//! Unit tests. Expected values come from Debian's pacman-conf 6.0.2 run on
//! the same text; `tests/tests/pacman_conf_conformance.rs` does that live.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Files in memory; `glob` understands a `*` in the last path component.
#[derive(Debug, Default)]
struct Files(BTreeMap<String, Vec<u8>>);

impl Files {
    fn with(mut self, path: &str, text: impl AsRef<[u8]>) -> Self {
        self.0.insert(path.to_owned(), text.as_ref().to_vec());
        self
    }

    fn parse(&self) -> Result<PacmanConf, ConfError> {
        parse("/etc/pacman.conf", self, "x86_64")
    }
}

impl IncludeSource for Files {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        let Some((prefix, suffix)) = pattern.split_once('*') else {
            return Ok(self.0.keys().filter(|p| *p == pattern).cloned().collect());
        };
        // Reverse order on purpose: the parser must sort.
        Ok(self
            .0
            .keys()
            .rev()
            .filter(|p| {
                p.len() >= prefix.len() + suffix.len()
                    && p.starts_with(prefix)
                    && p.ends_with(suffix)
                    && !p[prefix.len()..p.len() - suffix.len()].contains('/')
                    && !p[prefix.len()..].starts_with('.')
            })
            .cloned()
            .collect())
    }
}

fn conf(text: &str) -> PacmanConf {
    match Files::default().with("/etc/pacman.conf", text).parse() {
        Ok(conf) => conf,
        Err(err) => panic!("{err}"),
    }
}

fn conf_err(text: &str) -> ConfError {
    match Files::default().with("/etc/pacman.conf", text).parse() {
        Ok(conf) => panic!("parsed: {conf:?}"),
        Err(err) => err,
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn empty_options_get_pacmans_defaults() {
    let c = conf("[options]\n");
    assert_eq!(c.options, Options::default());
    let o = &c.options;
    assert_eq!(o.root_dir, "/");
    assert_eq!(o.db_path, "/var/lib/pacman/");
    assert_eq!(o.cache_dirs, strings(&["/var/cache/pacman/pkg/"]));
    assert_eq!(o.hook_dirs, strings(&["/etc/pacman.d/hooks/"]));
    assert_eq!(o.gpg_dir, "/etc/pacman.d/gnupg/");
    assert_eq!(o.log_file, "/var/log/pacman.log");
    assert_eq!(o.parallel_downloads, 1);
    assert_eq!(o.clean_method, CleanMethod::default());
    assert_eq!(o.sig_level, SigLevel::DEFAULT);
    assert_eq!(o.local_file_sig_level, SigLevel::DEFAULT);
    assert!(o.architectures.is_empty());
    assert_eq!(
        o.alpm_hook_dirs(),
        strings(&["/usr/share/libalpm/hooks/", "/etc/pacman.d/hooks/"])
    );
    assert!(c.repos.is_empty() && c.warnings.is_empty());
}

#[test]
fn only_rootdir_moves_dbpath_and_logfile_under_it() {
    let o = conf("[options]\nRootDir = /mnt/\n").options;
    assert_eq!(o.db_path, "/mnt//var/lib/pacman/");
    assert_eq!(o.log_file, "/mnt//var/log/pacman.log");
    assert_eq!(o.gpg_dir, "/etc/pacman.d/gnupg/");
    assert_eq!(o.cache_dirs, strings(&["/var/cache/pacman/pkg/"]));
    assert_eq!(o.alpm_hook_dirs()[0], "/mnt/usr/share/libalpm/hooks/");
    let o = conf("[options]\nRootDir =\n").options;
    assert_eq!(
        (o.root_dir.as_str(), o.db_path.as_str()),
        ("", "/var/lib/pacman/")
    );
}

#[test]
fn paths_keep_the_first_value_and_commands_the_last() {
    let o = conf(
        "[options]\nRootDir = /a\nRootDir = /b\nDBPath = /d1\nDBPath = /d2\nGPGDir = /g1\n\
         GPGDir = /g2\nLogFile = /l1\nLogFile = /l2\nXferCommand = a\nXferCommand = b\n\
         ParallelDownloads = 3\nParallelDownloads = 4\nCacheDir = /c1 /c2\nCacheDir = /c3\n",
    )
    .options;
    assert_eq!(
        [&o.root_dir, &o.db_path, &o.gpg_dir, &o.log_file],
        ["/a", "/d1", "/g1", "/l1"]
    );
    assert_eq!(o.xfer_command.as_deref(), Some("b"));
    assert_eq!(o.parallel_downloads, 4);
    assert_eq!(o.cache_dirs, strings(&["/c1", "/c2", "/c3"]));
}

#[test]
fn lists_split_on_spaces_only() {
    let o =
        conf("[options]\nHoldPkg = a  b\tc \nIgnorePkg =\nArchitecture = auto i686 auto\n").options;
    assert_eq!(o.hold_pkg, strings(&["a", "b\tc"]));
    assert!(o.ignore_pkg.is_empty());
    assert_eq!(o.architectures, strings(&["x86_64", "i686", "x86_64"]));
}

#[test]
fn servers_expand_arch_then_repo_wherever_architecture_is_set() {
    let c = conf(
        "[cachyos-v3]\nServer = https://m/$arch_v3/$repo/$repo\nCacheServer = http://c/$repo\n\
         [options]\nArchitecture = auto x86_64_v3\n",
    );
    let repo = &c.repos[0];
    assert_eq!(
        repo.servers,
        strings(&["https://m/x86_64_v3/cachyos-v3/cachyos-v3"])
    );
    assert_eq!(repo.cache_servers, strings(&["http://c/cachyos-v3"]));
    let c = conf("[core]\nServer = http://m/$repo/$other\n");
    assert_eq!(c.repos[0].servers, strings(&["http://m/core/$other"]));
}

#[test]
fn arch_variable_without_architecture_is_an_error_at_its_line() {
    let err = conf_err("[options]\n[core]\n\nServer = http://$arch/$repo\n");
    assert_eq!(
        err,
        ConfError::ArchUndefined {
            file: "/etc/pacman.conf".into(),
            line: 4,
            server: "http://$arch/$repo".into()
        }
    );
}

#[test]
fn includes_are_globbed_sorted_and_share_the_section() {
    let files = Files::default()
        .with(
            "/etc/pacman.conf",
            "Include = /etc/pacman.d/early\n[options]\nInclude = /etc/pacman.d/conf.d/*.conf\n\
             HoldPkg = after\n[core]\nInclude = /etc/pacman.d/mirrorlist\n",
        )
        .with("/etc/pacman.d/early", "[options]\nHoldPkg = early\n")
        .with("/etc/pacman.d/conf.d/b.conf", "HoldPkg = b\n")
        .with("/etc/pacman.d/conf.d/a.conf", "HoldPkg = a\n")
        .with("/etc/pacman.d/conf.d/.hidden.conf", "HoldPkg = hidden\n")
        .with(
            "/etc/pacman.d/conf.d/z.conf",
            "[extra]\nServer = http://z/$repo\n",
        )
        .with(
            "/etc/pacman.d/mirrorlist",
            "# comment\nServer = http://m/$repo\n",
        );
    let c = files.parse().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(c.options.hold_pkg, strings(&["early", "a", "b"]));
    // `HoldPkg = after` landed in [extra], opened by z.conf.
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].to_string(),
        "config file /etc/pacman.conf, line 4: directive 'HoldPkg' in section 'extra' not recognized."
    );
    let names: Vec<&str> = c.repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["extra", "core"]);
    assert_eq!(
        c.repo("core").map(|r| r.servers.clone()),
        Some(strings(&["http://m/core"]))
    );
}

#[test]
fn an_unmatched_include_is_read_literally_and_fails() {
    let err = conf_err("[options]\nInclude = /etc/pacman.d/none-*.conf\n");
    assert_eq!(
        err,
        ConfError::Read {
            file: "/etc/pacman.d/none-*.conf".into(),
            message: "No such file or directory".into()
        }
    );
    assert!(matches!(
        conf_err("[options]\nInclude\n"),
        ConfError::MissingValue { line: 2, .. }
    ));
}

fn chain(levels: usize) -> Files {
    let mut files = Files::default().with("/etc/pacman.conf", "[options]\nInclude = /1\n");
    for i in 1..=levels {
        let text = if i == levels {
            "HoldPkg = end\n".to_owned()
        } else {
            format!("Include = /{}\n", i + 1)
        };
        files = files.with(&format!("/{i}"), text);
    }
    files
}

#[test]
fn includes_nest_as_deep_as_pacman_allows_and_no_deeper() {
    assert!(chain(MAX_INCLUDE_DEPTH).parse().is_ok());
    let err = chain(MAX_INCLUDE_DEPTH + 1).parse();
    assert_eq!(
        err,
        Err(ConfError::IncludeTooDeep {
            file: format!("/{MAX_INCLUDE_DEPTH}"),
            line: 1,
            max: MAX_INCLUDE_DEPTH
        })
    );
}

#[test]
fn include_loops_are_named() {
    let files = Files::default()
        .with("/etc/pacman.conf", "[options]\nInclude = /a\n")
        .with("/a", "Include = /b\n")
        .with("/b", "\nInclude = /etc/pacman.*\n");
    assert_eq!(
        files.parse(),
        Err(ConfError::IncludeLoop {
            file: "/b".into(),
            line: 2,
            target: "/etc/pacman.conf".into()
        })
    );
}

#[test]
fn directives_need_a_section() {
    assert_eq!(
        conf_err("# top\nHoldPkg = a\n[options]\n"),
        ConfError::OutsideSection {
            file: "/etc/pacman.conf".into(),
            line: 2
        }
    );
}

#[test]
fn unknown_directives_and_misused_flags_only_warn() {
    let c = conf(
        "[options]\nColor = yes\nRootDir\nTotalDownload\nColor\nDownloadUser = alpm\n\
         DisableSandbox\n[core]\nFoo = bar\nServer = \n",
    );
    let unknown: Vec<(usize, &str)> = c
        .warnings
        .iter()
        .map(|w| match &w.kind {
            WarningKind::UnknownDirective { directive, .. } => (w.line, directive.as_str()),
            WarningKind::NotUtf8 => (w.line, "?"),
        })
        .collect();
    assert_eq!(
        unknown,
        [
            (2, "Color"),
            (3, "RootDir"),
            (4, "TotalDownload"),
            (9, "Foo")
        ]
    );
    assert!(c.options.color && c.options.disable_sandbox);
    assert_eq!(c.options.root_dir, "/");
    assert_eq!(c.options.download_user.as_deref(), Some("alpm"));
    assert_eq!(c.repos[0].servers, strings(&[""]));
}

#[test]
fn options_may_appear_twice() {
    let c = conf("[options]\nHoldPkg = a\n[c]\nServer = s\n[options]\nHoldPkg = b\n[c]\n");
    assert_eq!(c.options.hold_pkg, strings(&["a", "b"]));
    assert_eq!(c.repos.len(), 2);
    assert!(c.repos[1].servers.is_empty());
}

#[test]
fn siglevels_follow_libalpms_bits() {
    use SigCheck::*;
    use SigTrust::*;
    let p = |check, trust| SigPolicy { check, trust };
    let c = conf(
        "[options]\nSigLevel = Never TrustAll\nSigLevel = DatabaseRequired\n\
         LocalFileSigLevel = PackageOptional\n[c]\nSigLevel = Required\n[d]\n\
         SigLevel = PackageTrustedOnly\n[e]\nSigLevel = Optional\nSigLevel = PackageNever DatabaseTrustAll\n[f]\n",
    );
    let o = &c.options;
    assert_eq!(
        o.sig_level_raw,
        strings(&["Never", "TrustAll", "DatabaseRequired"])
    );
    assert_eq!(o.sig_level.package, p(Never, TrustAll));
    assert_eq!(o.sig_level.database, p(Required, TrustAll));
    assert_eq!(o.local_file_sig_level.package, p(Optional, TrustAll));
    assert_eq!(o.remote_file_sig_level, o.sig_level);
    let level = |name: &str| {
        c.repo(name)
            .map(|r| (r.sig_level.package, r.sig_level.database))
    };
    assert_eq!(
        level("c"),
        Some((p(Required, TrustAll), p(Required, TrustAll)))
    );
    assert_eq!(
        level("d"),
        Some((p(Never, TrustedOnly), p(Required, TrustAll)))
    );
    assert_eq!(
        level("e"),
        Some((p(Never, TrustAll), p(Optional, TrustAll)))
    );
    assert_eq!(c.repo("f").map(|r| r.sig_level), Some(o.sig_level));
    assert!(matches!(
        conf_err("[options]\nSigLevel = Optional Sometimes\n"),
        ConfError::InvalidValue { value, .. } if value == "Sometimes"
    ));
}

#[test]
fn usage_and_clean_method() {
    let c = conf(
        "[options]\nCleanMethod = KeepCurrent\n[a]\nUsage = Sync Search\n[b]\nUsage =\n\
         [c]\nUsage = Sync\nUsage = Search Install Upgrade\n",
    );
    assert_eq!(
        c.options.clean_method,
        CleanMethod {
            keep_installed: false,
            keep_current: true
        }
    );
    let a = c.repos[0].usage;
    assert!(a.sync && a.search && !a.install && !a.upgrade);
    assert!(c.repos[1].usage.is_all() && c.repos[2].usage.is_all());
    assert!(matches!(
        conf_err("[a]\nUsage = Sometimes\n"),
        ConfError::InvalidValue { .. }
    ));
    assert!(matches!(
        conf_err("[a]\nUsage\n"),
        ConfError::MissingValue { .. }
    ));
    assert!(matches!(
        conf_err("[options]\nCleanMethod = KeepAll\n"),
        ConfError::InvalidValue { .. }
    ));
}

#[test]
fn parallel_downloads_is_a_positive_c_int() {
    assert_eq!(
        conf("[options]\nParallelDownloads = +7\n")
            .options
            .parallel_downloads,
        7
    );
    assert_eq!(
        conf("[options]\nParallelDownloads = 2147483647\n")
            .options
            .parallel_downloads,
        i32::MAX as u32
    );
    for (value, out_of_range) in [
        ("0", true),
        ("-3", true),
        ("2147483648", true),
        ("-9223372036854775808", true),
        ("99999999999999999999", false),
        ("5x", false),
        ("0x10", false),
        ("", false),
        ("+", false),
    ] {
        let err = conf_err(&format!("[options]\nParallelDownloads = {value}\n"));
        assert_eq!(
            matches!(err, ConfError::OutOfRange { .. }),
            out_of_range,
            "{value}"
        );
    }
}

#[test]
fn xfercommand_with_an_open_quote_is_refused() {
    let ok = conf("[options]\nXferCommand = /bin/x 'a \\' b' \\\"c\n");
    assert_eq!(
        ok.options.xfer_command.as_deref(),
        Some("/bin/x 'a \\' b' \\\"c")
    );
    assert!(matches!(
        conf_err("[options]\nXferCommand = /bin/x 'a b\n"),
        ConfError::InvalidValue { .. }
    ));
    assert_eq!(
        conf("[options]\nXferCommand =\n")
            .options
            .xfer_command
            .as_deref(),
        Some("")
    );
}

#[test]
fn lines_are_read_like_fgets_and_trimmed_like_isspace() {
    let long = format!(
        "[options]\nHoldPkg = {} b\nHoldPkg = {}\nHoldPkg = c\n",
        "a".repeat(5000),
        "x".repeat(4085)
    );
    let c = conf(&long);
    let lengths: Vec<usize> = c.options.hold_pkg.iter().map(String::len).collect();
    assert_eq!(lengths, [4085, 4085, 1]);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].line, 3);

    let c = conf(
        "[options]\r\n\x0bHoldPkg = a\0b\x0c\n\0HoldPkg = z\nHoldPkg = \u{a0}n\u{a0}\n[c\0]\n",
    );
    assert_eq!(c.options.hold_pkg, strings(&["a", "\u{a0}n\u{a0}"]));
    assert!(c.repos.is_empty());
    assert_eq!(c.warnings.len(), 1);

    let c = conf("  [ options ]  \n[]\nServer\t=\ta=b # not a comment\n   # comment\n");
    assert_eq!(c.repos[0].name, " options ");
    assert_eq!(c.repos[1].name, "");
    assert_eq!(c.repos[1].servers, strings(&["a=b # not a comment"]));
}

#[test]
fn invalid_utf8_is_replaced_with_a_warning() {
    let files = Files::default().with(
        "/etc/pacman.conf",
        b"# caf\xe9 comments are fine\n[options]\nHoldPkg = caf\xe9\n".as_slice(),
    );
    let c = files.parse().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(c.options.hold_pkg, strings(&["caf\u{fffd}"]));
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].kind, WarningKind::NotUtf8);
    assert_eq!(c.warnings[0].line, 3);
}

#[test]
fn a_missing_main_file_names_it() {
    assert_eq!(
        Files::default().parse(),
        Err(ConfError::Read {
            file: "/etc/pacman.conf".into(),
            message: "No such file or directory".into()
        })
    );
}

proptest! {
    #[test]
    fn never_panics_on_bytes(main in proptest::collection::vec(any::<u8>(), 0..2000),
                             other in proptest::collection::vec(any::<u8>(), 0..500)) {
        let files = Files::default().with("/etc/pacman.conf", &main).with("/i", &other);
        let _ = files.parse();
    }

    #[test]
    fn never_panics_on_directive_soup(lines in proptest::collection::vec(
        prop_oneof![
            Just("[options]".to_owned()),
            "\\[[a-z$ ]{0,6}\\]",
            "(Include|Server|SigLevel|Usage|Architecture|ParallelDownloads|CleanMethod|XferCommand|RootDir|HoldPkg|Color) ?(= ?)?[ -~]{0,12}",
            Just("Include = /etc/pacman.conf".to_owned()),
            Just("Include = /i".to_owned()),
        ],
        0..30,
    )) {
        let text = lines.join("\n");
        let files = Files::default().with("/etc/pacman.conf", &text).with("/i", &text);
        let _ = files.parse();
    }
}
