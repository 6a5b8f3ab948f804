//! Our `pacman.conf` parser against Debian's `pacman-conf` 6.0.2.
//!
//! Each configuration is written to a temporary directory (the templates in
//! `tests/data/pacman-conf/` say `@DIR@` where the directory goes, so every
//! `Include` is absolute), parsed by us and by `pacman-conf`, and our result
//! is printed in `pacman-conf`'s format and compared as a whole: the full
//! dump, `--repo-list`, and `--repo NAME` for every repository. Both are given
//! this machine's architecture for `auto`.

#[path = "pacman_conf_conformance/printer.rs"]
mod printer;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pacsync_core::pacman_conf::{ConfError, PacmanConf};
use pacsync_pacman::conf::{load_pacman_conf, machine_arch};
use printer::Printer;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether `pacman-conf` can run; without it the test fails under CI and is
/// skipped (loudly) elsewhere.
fn have_pacman_conf() -> bool {
    let found = Command::new("pacman-conf")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "pacman-conf is not installed; CI must install pacman (Debian: pacman-package-manager)"
        );
        println!("SKIPPED: needs pacman-conf");
    }
    found
}

struct PacmanConfRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn pacman_conf(config: &Path, args: &[&str]) -> Result<PacmanConfRun, std::io::Error> {
    let out = Command::new("pacman-conf")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("LC_ALL", "C")
        .output()?;
    Ok(PacmanConfRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Compare everything `pacman-conf` prints for `config` with our parse of
/// it. `Ok(None)` when both refuse the file; `Err` describes any difference.
fn compare(config: &Path, arch: &str) -> Result<Option<PacmanConf>, Box<dyn std::error::Error>> {
    let ours = load_pacman_conf(config, arch);
    let theirs = pacman_conf(config, &[])?;
    // Long lines cut short, so that a failure stays readable.
    let text: String = String::from_utf8_lossy(&fs::read(config)?)
        .lines()
        .map(|line| format!("{:?}\n", line.chars().take(100).collect::<String>()))
        .collect();
    let differ = |what: &str, ours: &str, theirs: &str| {
        format!(
            "{}: {what} differs\n--- ours ---\n{ours}--- pacman-conf ---\n{theirs}--- config ---\n{text}",
            config.display()
        )
    };
    let ours = match (ours, theirs.ok) {
        (Ok(ours), true) => ours,
        (Err(_), false) => return Ok(None),
        (ours, _) => {
            let ours = match ours {
                Ok(_) => "accepted\n".to_owned(),
                Err(err) => format!("refused: {err}\n"),
            };
            let theirs = format!(
                "{}\n{}",
                if theirs.ok { "accepted" } else { "refused" },
                theirs.stderr
            );
            return Err(differ("acceptance", &ours, &theirs).into());
        }
    };
    let mut dump = Printer::default();
    dump.dump(&ours);
    if dump.0 != theirs.stdout {
        return Err(differ("the dump", &dump.0, &theirs.stdout).into());
    }

    let list = pacman_conf(config, &["--repo-list"])?;
    let names: String = ours.repos.iter().map(|r| format!("{}\n", r.name)).collect();
    if names != list.stdout {
        return Err(differ("--repo-list", &names, &list.stdout).into());
    }

    let unique: BTreeSet<&str> = ours.repos.iter().map(|r| r.name.as_str()).collect();
    for name in unique {
        let theirs = pacman_conf(config, &["--repo", name])?;
        let mut repo = Printer::default();
        if let Some(first) = ours.repo(name) {
            repo.repo(first);
        }
        if repo.0 != theirs.stdout {
            return Err(differ(&format!("--repo {name:?}"), &repo.0, &theirs.stdout).into());
        }
    }
    Ok(Some(ours))
}

/// [`compare`] for a file both must accept.
fn assert_conforms(config: &Path, arch: &str) -> Result<PacmanConf, Box<dyn std::error::Error>> {
    compare(config, arch)?
        .ok_or_else(|| format!("{}: refused by pacman-conf and by us", config.display()).into())
}

/// Copy a scenario from `tests/data/pacman-conf/NAME` to `dir`, putting `dir`
/// where the templates say `@DIR@`; returns the main file.
fn install_scenario(name: &str, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/pacman-conf")
        .join(name);
    let dir_text = dir.to_str().ok_or("temporary directory is not UTF-8")?;
    let mut pending = vec![from.clone()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current)? {
            let path = entry?.path();
            let target = dir.join(path.strip_prefix(&from)?);
            if path.is_dir() {
                fs::create_dir_all(&target)?;
                pending.push(path);
            } else {
                let text = fs::read_to_string(&path)?.replace("@DIR@", dir_text);
                fs::write(target, text)?;
            }
        }
    }
    Ok(dir.join("pacman.conf"))
}

#[test]
fn distribution_configs_match_pacman_conf() -> TestResult {
    if !have_pacman_conf() {
        return Ok(());
    }
    let arch = machine_arch()?;
    for name in [
        "arch",
        "manjaro",
        "endeavouros",
        "cachyos",
        "artix",
        "custom",
        "sandbox",
        "odd-spacing",
        "nested-glob",
    ] {
        let dir = tempfile::tempdir()?;
        let config = install_scenario(name, dir.path())?;
        let conf = assert_conforms(&config, &arch)?;
        // The same file with Windows line endings reads the same.
        let crlf = dir.path().join("pacman-crlf.conf");
        fs::write(&crlf, fs::read_to_string(&config)?.replace('\n', "\r\n"))?;
        assert_eq!(
            assert_conforms(&crlf, &arch)?.repos,
            conf.repos,
            "{name} with CRLF"
        );
    }
    Ok(())
}

#[test]
fn scenario_details_pacman_conf_does_not_show() -> Result<(), Box<dyn std::error::Error>> {
    let arch = machine_arch()?;
    let dir = tempfile::tempdir()?;
    let conf = load_pacman_conf(&install_scenario("custom", dir.path())?, &arch)?;
    let remote = conf.repo("pacsync-remote").ok_or("no pacsync-remote")?;
    assert_eq!(
        remote.cache_servers,
        [format!("http://cache.lan:9129/repo/pacsync-remote/{arch}")]
    );
    assert!(conf.warnings.is_empty(), "{:?}", conf.warnings);
    assert!(
        conf.repo("empty-repo")
            .is_some_and(|r| r.servers.is_empty())
    );

    let dir = tempfile::tempdir()?;
    let conf = load_pacman_conf(&install_scenario("arch", dir.path())?, &arch)?;
    assert_eq!(conf.options.download_user.as_deref(), Some("alpm"));
    Ok(())
}

#[test]
fn include_chains_stop_at_pacmans_depth_limit() -> TestResult {
    if !have_pacman_conf() {
        return Ok(());
    }
    let arch = machine_arch()?;
    for (levels, accepted) in [(10, true), (11, false)] {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let main = d.join("pacman.conf");
        fs::write(
            &main,
            format!("[options]\nInclude = {}/1.conf\n", d.display()),
        )?;
        for i in 1..=levels {
            let text = if i == levels {
                "[deepest]\nServer = file:///deep\n".to_owned()
            } else {
                format!("Include = {}/{}.conf\n", d.display(), i + 1)
            };
            fs::write(d.join(format!("{i}.conf")), text)?;
        }
        if accepted {
            assert_conforms(&main, &arch)?;
        } else {
            assert!(!pacman_conf(&main, &[])?.ok);
            let err = load_pacman_conf(&main, &arch);
            assert!(
                matches!(err, Err(ConfError::IncludeTooDeep { ref file, .. }) if file.ends_with("/10.conf")),
                "{err:?}"
            );
        }
    }
    Ok(())
}

/// Configurations both must refuse, and how we name the problem.
#[test]
fn broken_configs_are_refused_like_pacman_conf() -> TestResult {
    if !have_pacman_conf() {
        return Ok(());
    }
    let arch = machine_arch()?;
    let dir = tempfile::tempdir()?;
    let d = dir
        .path()
        .to_str()
        .ok_or("temporary directory is not UTF-8")?;
    fs::write(
        format!("{d}/loop-a.conf"),
        format!("Include = {d}/loop-b.conf\n"),
    )?;
    fs::write(
        format!("{d}/loop-b.conf"),
        format!("Include = {d}/loop-a.conf\n"),
    )?;
    type Check = fn(&ConfError) -> bool;
    let cases: [(&str, String, Check); 11] = [
        (
            "missing include",
            format!("[core]\nInclude = {d}/no-such-mirrorlist\n"),
            |e| matches!(e, ConfError::Read { file, .. } if file.ends_with("/no-such-mirrorlist")),
        ),
        (
            "include glob matching nothing",
            format!("[options]\nInclude = {d}/conf.d/*.conf\n"),
            |e| matches!(e, ConfError::Read { file, .. } if file.ends_with("/conf.d/*.conf")),
        ),
        (
            "include loop",
            format!("[options]\nInclude = {d}/loop-a.conf\n"),
            |e| matches!(e, ConfError::IncludeLoop { target, .. } if target.ends_with("/loop-a.conf")),
        ),
        (
            "$arch without Architecture",
            "[core]\nServer = https://mirror/$repo/os/$arch\n".to_owned(),
            |e| matches!(e, ConfError::ArchUndefined { line: 2, .. }),
        ),
        (
            "directive before any section",
            "HoldPkg = pacman\n[options]\n".to_owned(),
            |e| matches!(e, ConfError::OutsideSection { line: 1, .. }),
        ),
        (
            "Server without a value",
            "[core]\nServer\n".to_owned(),
            |e| matches!(e, ConfError::MissingValue { directive, .. } if directive == "Server"),
        ),
        (
            "unknown SigLevel word",
            "[options]\nSigLevel = Required Maybe\n".to_owned(),
            |e| matches!(e, ConfError::InvalidValue { value, .. } if value == "Maybe"),
        ),
        (
            "unknown Usage word",
            "[core]\nUsage = Sync Everything\nServer = file:///x\n".to_owned(),
            |e| matches!(e, ConfError::InvalidValue { value, .. } if value == "Everything"),
        ),
        (
            "ParallelDownloads = 0",
            "[options]\nParallelDownloads = 0\n".to_owned(),
            |e| matches!(e, ConfError::OutOfRange { .. }),
        ),
        (
            "unknown CleanMethod",
            "[options]\nCleanMethod = KeepEverything\n".to_owned(),
            |e| matches!(e, ConfError::InvalidValue { .. }),
        ),
        (
            "XferCommand with an open quote",
            "[options]\nXferCommand = /usr/bin/curl 'x -o %o %u\n".to_owned(),
            |e| matches!(e, ConfError::InvalidValue { .. }),
        ),
    ];
    for (what, text, expected) in cases {
        let config = dir.path().join("pacman.conf");
        fs::write(&config, &text)?;
        assert!(
            !pacman_conf(&config, &[])?.ok,
            "pacman-conf accepted {what}"
        );
        match load_pacman_conf(&config, &arch) {
            Ok(_) => panic!("we accepted {what}"),
            Err(err) => assert!(expected(&err), "{what}: {err}"),
        }
    }
    Ok(())
}

/// A small deterministic generator (no external crate needed for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }
}

/// Random configurations built from pacman.conf's vocabulary, separators and
/// junk: pacman-conf and we must agree on accepting each, and on every value.
#[test]
fn random_configs_agree_with_pacman_conf() -> TestResult {
    if !have_pacman_conf() {
        return Ok(());
    }
    let arch = machine_arch()?;
    let dir = tempfile::tempdir()?;
    let d = dir
        .path()
        .to_str()
        .ok_or("temporary directory is not UTF-8")?;
    fs::create_dir_all(format!("{d}/inc/dir.conf"))?;
    fs::write(
        format!("{d}/inc/a.conf"),
        "[extra]\nServer = http://a/$repo/$arch\n",
    )?;
    fs::write(
        format!("{d}/inc/b.conf"),
        "Server = http://b/$repo\nHoldPkg = b\n",
    )?;
    fs::write(
        format!("{d}/inc/c.conf"),
        "[options]\nArchitecture = auto\n",
    )?;
    let main = format!("{d}/pacman.conf");
    let includes = [
        format!("{d}/inc/a.conf"),
        format!("{d}/inc/*.conf"),
        format!("{d}/inc/c.conf"),
        format!("{d}/inc/dir.conf"),
        format!("{d}/inc/[ab].conf"),
        main.clone(),
    ];
    let includes: Vec<&str> = includes.iter().map(String::as_str).collect();
    let keys = [
        "RootDir",
        "DBPath",
        "CacheDir",
        "HookDir",
        "GPGDir",
        "LogFile",
        "HoldPkg",
        "IgnorePkg",
        "IgnoreGroup",
        "NoUpgrade",
        "NoExtract",
        "Architecture",
        "XferCommand",
        "UseSyslog",
        "Color",
        "CheckSpace",
        "VerbosePkgLists",
        "ILoveCandy",
        "NoProgressBar",
        "DisableDownloadTimeout",
        "ParallelDownloads",
        "CleanMethod",
        "SigLevel",
        "LocalFileSigLevel",
        "RemoteFileSigLevel",
        "Server",
        "Usage",
        "CacheServer",
        "DownloadUser",
        "Bogus",
        "color",
        "",
    ];
    let words = [
        "auto",
        "x86_64",
        "x86_64_v3",
        "Never",
        "Optional",
        "Required",
        "TrustAll",
        "TrustedOnly",
        "PackageRequired",
        "DatabaseNever",
        "PackageTrustAll",
        "Sync",
        "Search",
        "Install",
        "Upgrade",
        "All",
        "KeepInstalled",
        "KeepCurrent",
        "1",
        "7",
        "0",
        "/mnt",
        "/mnt/",
        "http://m/$repo/$arch",
        "file:///r/$repo",
        "$arch_v3",
        "'quoted word'",
        "\"open",
        "a=b",
        "#hash",
        "",
        "pkg*",
    ];
    let spaces = [" ", "  ", "\t", "", " \t ", "\x0b", "\r"];
    let sections = [
        "[options]",
        "[core]",
        "[extra]",
        "[core]",
        "[]",
        "[ spaced ]",
        "[op\0tions]",
    ];
    // PACSYNC_CONF_SEED=<n> explores other files; failures print the file.
    let seed = std::env::var("PACSYNC_CONF_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = Lcg(seed);
    let mut accepted = 0;
    for case in 0..250 {
        // Most files start in [options], as real ones do, so that more of
        // them get past their first line.
        let mut text = match rng.next() % 4 {
            0 => String::new(),
            1 => "[options]\nArchitecture = auto\n".to_owned(),
            _ => "[options]\n".to_owned(),
        };
        for _ in 0..rng.next() % 25 {
            let line = match rng.next() % 10 {
                0 | 1 => rng.pick(&sections).to_owned(),
                2 => format!(
                    "Include{}={}{}",
                    rng.pick(&spaces),
                    rng.pick(&spaces),
                    rng.pick(&includes)
                ),
                3 => format!("{}# comment", rng.pick(&spaces)),
                4 => String::new(),
                5 => format!("HoldPkg = {}", "x".repeat(4080 + rng.next() % 30)),
                _ => {
                    let mut line = format!("{}{}", rng.pick(&spaces), rng.pick(&keys));
                    if !rng.next().is_multiple_of(5) {
                        line.push_str(rng.pick(&spaces));
                        line.push('=');
                        for _ in 0..rng.next() % 4 {
                            line.push_str(rng.pick(&spaces));
                            line.push_str(rng.pick(&words));
                        }
                    }
                    line
                }
            };
            text.push_str(&line);
            text.push('\n');
        }
        fs::write(&main, &text)?;
        let conf =
            compare(Path::new(&main), &arch).map_err(|err| format!("random case {case}: {err}"))?;
        accepted += usize::from(conf.is_some());
    }
    // Most random files are refused somewhere; enough must pass to compare values.
    println!("{accepted} of 250 random configurations accepted");
    assert!(
        accepted >= 75,
        "only {accepted} random configurations were accepted"
    );
    Ok(())
}
