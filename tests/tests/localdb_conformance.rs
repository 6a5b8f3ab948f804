//! The local database reader against the real pacman, field for field, on a
//! local database a real pacman wrote on a real Arch system (June 2019).
//!
//! Needs `pacman` and the fixtures (`PACSYNC_FIXTURES`, by default
//! `/work/shared/fixtures/arch-2019`); under `CI` a missing one fails the
//! test, elsewhere the test prints `SKIPPED: needs ...` and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use pacsync_core::InstallReason;
use pacsync_core::localdb::LocalPackage;
use pacsync_pacman::db::{read_local_db, read_local_names};
use pacsync_tests::pacman_output::{c_locale_date, human_size, list, parse_info};

/// A copy of the fixture local database (pacman may write to its dbpath).
struct FixtureDb {
    dir: tempfile::TempDir,
}

impl FixtureDb {
    fn dbpath(&self) -> &Path {
        self.dir.path()
    }
}

fn fixture_db() -> Option<FixtureDb> {
    let fixtures = std::env::var_os("PACSYNC_FIXTURES").map_or_else(
        || PathBuf::from("/work/shared/fixtures/arch-2019"),
        PathBuf::from,
    );
    let local = fixtures.join("local");
    if !proceed(
        local.is_dir(),
        &format!("the fixtures at {}", local.display()),
    ) || !proceed(on_path("pacman"), "the `pacman` binary on PATH")
    {
        return None;
    }
    let dir = tempfile::tempdir().expect("create a temporary directory");
    copy_dir(&local, &dir.path().join("local"));
    Some(FixtureDb { dir })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("list fixture directory") {
        let entry = entry.expect("read fixture directory");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// Under `CI` a missing precondition fails; elsewhere the test is skipped.
fn proceed(available: bool, what: &str) -> bool {
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test needs {what}"
        );
        eprintln!("SKIPPED: needs {what}");
    }
    available
}

/// Runs pacman in the C locale and UTC, without a terminal width (so that
/// nothing is wrapped), and returns its standard output.
fn pacman(args: &[&str]) -> String {
    let output = Command::new("pacman")
        .args(args)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env_remove("COLUMNS")
        .output()
        .expect("run pacman");
    assert!(
        output.status.success(),
        "pacman {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("pacman prints UTF-8 for these fixtures")
}

#[test]
fn names_match_pacman_query() {
    let Some(db) = fixture_db() else { return };
    let dbpath = db.dbpath().to_str().expect("UTF-8 temporary path");
    let pacman: Vec<String> = pacman(&["--dbpath", dbpath, "-Q"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pacman.len(), 132, "the fixture has 132 packages");

    let names = read_local_names(db.dbpath()).expect("read local names");
    let ours: Vec<String> = names
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    assert_eq!(ours, pacman);

    let packages = read_local_db(db.dbpath()).expect("read local database");
    let ours: Vec<String> = packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    assert_eq!(ours, pacman);
}

#[test]
fn every_field_matches_pacman_query_info() {
    let Some(db) = fixture_db() else { return };
    let dbpath = db.dbpath().to_str().expect("UTF-8 temporary path");
    let pacman = parse_info(&pacman(&["--dbpath", dbpath, "-Qi"]));
    let packages = read_local_db(db.dbpath()).expect("read local database");
    assert_eq!(
        packages.len(),
        pacman.len(),
        "as many packages as pacman lists"
    );

    let mut mismatches = Vec::new();
    for (package, printed) in packages.iter().zip(&pacman) {
        for (field, ours) in expected_info(package) {
            let theirs = printed
                .get(field)
                .map(String::as_str)
                .unwrap_or("<missing>");
            if ours != theirs {
                mismatches.push(format!(
                    "{} {field}: ours {ours:?}, pacman {theirs:?}",
                    package.name
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// What `pacman -Qi` prints for `package`, field by field.
fn expected_info(package: &LocalPackage) -> Vec<(&'static str, String)> {
    let text = |value: &Option<String>| match value.as_deref() {
        None | Some("") => "None".to_owned(),
        Some(value) => value.to_owned(),
    };
    let optional_deps = match package.optdepends.is_empty() {
        true => "None".to_owned(),
        false => package.optdepends.join("\n"),
    };
    let reason = match package.reason {
        InstallReason::Explicit => "Explicitly installed",
        InstallReason::Dependency => "Installed as a dependency for another package",
    };
    vec![
        ("Name", package.name.clone()),
        ("Version", package.version.to_string()),
        ("Description", text(&package.desc)),
        ("Architecture", text(&package.arch)),
        ("URL", text(&package.url)),
        ("Licenses", list(&package.licenses)),
        ("Groups", list(&package.groups)),
        ("Provides", list(&package.provides)),
        ("Depends On", list(&package.depends)),
        ("Optional Deps", optional_deps),
        ("Conflicts With", list(&package.conflicts)),
        ("Replaces", list(&package.replaces)),
        ("Installed Size", human_size(package.size, None)),
        ("Packager", text(&package.packager)),
        ("Build Date", c_locale_date(package.build_date)),
        ("Install Date", c_locale_date(package.install_date)),
        ("Install Reason", reason.to_owned()),
        ("Validated By", validated_by(&package.validation)),
    ]
}

/// pacman's validation flags, printed in its fixed order.
fn validated_by(validation: &[String]) -> String {
    let has = |name: &str| validation.iter().any(|v| v == name);
    if validation.is_empty() {
        return "Unknown".to_owned();
    }
    if has("none") {
        return "None".to_owned();
    }
    let names = [
        ("md5", "MD5 Sum"),
        ("sha256", "SHA-256 Sum"),
        ("pgp", "Signature"),
    ];
    let shown: Vec<&str> = names
        .iter()
        .filter(|(key, _)| has(key))
        .map(|(_, label)| *label)
        .collect();
    shown.join("  ")
}
