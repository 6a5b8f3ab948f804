//! The sync database reader against the real pacman, on sync databases of
//! the real Arch repositories (June 2019), in every compression pacman
//! reads, and on a `.files` database.
//!
//! Needs `pacman`, `gzip`, `zstd`, `xz` and the fixtures (`PACSYNC_FIXTURES`,
//! by default `/work/shared/fixtures/arch-2019`); under `CI` a missing one
//! fails the test, elsewhere the test prints `SKIPPED: needs ...` and passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pacsync_core::syncdb::{SyncEntry, parse_sync_db};
use pacsync_pacman::db::read_sync_db;
use pacsync_tests::pacman_output::{c_locale_date, human_size, list, parse_info};

const REPOS: [&str; 5] = [
    "core",
    "testing",
    "multilib",
    "multilib-testing",
    "community-testing",
];

fn fixtures() -> Option<PathBuf> {
    let fixtures = std::env::var_os("PACSYNC_FIXTURES").map_or_else(
        || PathBuf::from("/work/shared/fixtures/arch-2019"),
        PathBuf::from,
    );
    let found = fixtures.join("sync/core.db").is_file();
    (proceed(found, &format!("the fixtures at {}", fixtures.display()))
        && proceed(on_path("pacman"), "the `pacman` binary on PATH"))
    .then(|| fixtures.join("sync"))
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

/// A dbpath with `sync/<repo>.<ext>` files and a pacman.conf listing the
/// repositories (no servers are contacted: the databases are already there).
struct SyncSandbox {
    dir: tempfile::TempDir,
    repos: Vec<String>,
}

impl SyncSandbox {
    fn new(databases: &[(&str, &str, Vec<u8>)]) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let root = dir.path();
        for sub in ["sync", "root", "cache"] {
            std::fs::create_dir_all(root.join(sub)).expect("create sandbox directory");
        }
        let mut conf = format!(
            "[options]\nRootDir = {0}/root\nDBPath = {0}/\nCacheDir = {0}/cache/\n\
             LogFile = {0}/pacman.log\nGPGDir = {0}/gnupg/\nHookDir = {0}/hooks/\n\
             Architecture = auto\nSigLevel = Never\n",
            root.display()
        );
        let mut repos = Vec::new();
        for (repo, ext, bytes) in databases {
            std::fs::write(root.join(format!("sync/{repo}.{ext}")), bytes).expect("write database");
            if !repos.iter().any(|r| r == repo) {
                conf.push_str(&format!("\n[{repo}]\nServer = file:///nonexistent\n"));
                repos.push((*repo).to_owned());
            }
        }
        std::fs::write(root.join("pacman.conf"), conf).expect("write pacman.conf");
        SyncSandbox { dir, repos }
    }

    fn sync_file(&self, repo: &str) -> PathBuf {
        self.dir.path().join(format!("sync/{repo}.db"))
    }

    /// Runs pacman in the C locale and UTC, without a terminal width (so
    /// that nothing is wrapped), and returns its standard output.
    fn pacman(&self, args: &[&str]) -> String {
        let conf = self.dir.path().join("pacman.conf");
        let output = Command::new("pacman")
            .arg("--config")
            .arg(&conf)
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
}

fn read_fixtures(dir: &Path) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    REPOS
        .iter()
        .map(|repo| {
            (
                *repo,
                "db",
                std::fs::read(dir.join(format!("{repo}.db"))).expect("read fixture"),
            )
        })
        .collect()
}

/// `pacman -Sl` lines from what we read: repositories in pacman.conf order.
fn list_lines(sandbox: &SyncSandbox, entries: impl Fn(&str) -> Vec<SyncEntry>) -> Vec<String> {
    sandbox
        .repos
        .iter()
        .flat_map(|repo| {
            entries(repo)
                .into_iter()
                .map(move |e| format!("{repo} {} {}", e.name, e.version))
        })
        .collect()
}

#[test]
fn list_matches_pacman_sync_list() {
    let Some(dir) = fixtures() else { return };
    let sandbox = SyncSandbox::new(&read_fixtures(&dir));
    let pacman: Vec<String> = sandbox
        .pacman(&["-Sl"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pacman.len(), 586, "the fixtures hold 586 packages");
    let ours = list_lines(&sandbox, |repo| {
        read_sync_db(&sandbox.sync_file(repo)).expect("read database")
    });
    assert_eq!(ours, pacman);
}

#[test]
fn every_field_matches_pacman_sync_info() {
    let Some(dir) = fixtures() else { return };
    let sandbox = SyncSandbox::new(&read_fixtures(&dir));
    // Without targets, -Si describes every package of every repository.
    let pacman = parse_info(&sandbox.pacman(&["-Si"]));
    let ours: Vec<(&String, SyncEntry)> = sandbox
        .repos
        .iter()
        .flat_map(|repo| {
            read_sync_db(&sandbox.sync_file(repo))
                .expect("read database")
                .into_iter()
                .map(move |e| (repo, e))
        })
        .collect();
    assert_eq!(ours.len(), pacman.len(), "as many packages as pacman lists");

    let mut mismatches = Vec::new();
    for ((repo, entry), printed) in ours.iter().zip(&pacman) {
        for (field, ours) in expected_info(repo, entry) {
            let theirs = printed
                .get(field)
                .map(String::as_str)
                .unwrap_or("<missing>");
            if ours != theirs {
                mismatches.push(format!(
                    "{repo}/{} {field}: ours {ours:?}, pacman {theirs:?}",
                    entry.name
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

/// What `pacman -Si` prints for `entry`, field by field (no package file is
/// in the cache, so the download size is the whole package).
fn expected_info(repo: &str, entry: &SyncEntry) -> Vec<(&'static str, String)> {
    let text = |value: &Option<String>| match value.as_deref() {
        None | Some("") => "None".to_owned(),
        Some(value) => value.to_owned(),
    };
    let optional_deps = match entry.optdepends.is_empty() {
        true => "None".to_owned(),
        false => entry.optdepends.join("\n"),
    };
    let validation = [
        (entry.md5.is_some(), "MD5 Sum"),
        (entry.sha256.is_some(), "SHA-256 Sum"),
        (entry.has_pgpsig, "Signature"),
    ];
    let download = human_size(entry.csize, None);
    let download_unit = download
        .split(' ')
        .nth(1)
        .and_then(|unit| unit.chars().next());
    let validated: Vec<&str> = validation
        .iter()
        .filter(|(has, _)| *has)
        .map(|(_, label)| *label)
        .collect();
    vec![
        ("Repository", repo.to_owned()),
        ("Name", entry.name.clone()),
        ("Version", entry.version.to_string()),
        ("Description", text(&entry.desc)),
        ("Architecture", text(&entry.arch)),
        ("URL", text(&entry.url)),
        ("Licenses", list(&entry.licenses)),
        ("Groups", list(&entry.groups)),
        ("Provides", list(&entry.provides)),
        ("Depends On", list(&entry.depends)),
        ("Optional Deps", optional_deps),
        ("Conflicts With", list(&entry.conflicts)),
        ("Replaces", list(&entry.replaces)),
        ("Download Size", download),
        // pacman -Si prints the installed size in the download size's unit.
        ("Installed Size", human_size(entry.isize, download_unit)),
        ("Packager", text(&entry.packager)),
        ("Build Date", c_locale_date(entry.build_date)),
        (
            "Validated By",
            if validated.is_empty() {
                "None".to_owned()
            } else {
                validated.join("  ")
            },
        ),
    ]
}

/// Runs `program args` with `input` on standard input; returns its output.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Write from a thread: the filter's output pipe must be drained meanwhile.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for the filter");
    writer
        .join()
        .expect("writer thread")
        .expect("write to the filter");
    assert!(output.status.success(), "{program} {args:?} failed");
    output.stdout
}

#[test]
fn every_compression_reads_the_same_as_pacman() {
    let Some(dir) = fixtures() else { return };
    if !["gzip", "zstd", "xz"]
        .iter()
        .all(|tool| proceed(on_path(tool), &format!("the `{tool}` binary on PATH")))
    {
        return;
    }
    let gz = std::fs::read(dir.join("core.db")).expect("read fixture");
    let tar = filter("gzip", &["-dc"], &gz);
    let zst = filter("zstd", &["-q", "-c"], &tar);
    let xz = filter("xz", &["-c"], &tar);
    let expected = parse_sync_db(&gz).expect("read the gzip database");
    assert_eq!(expected.len(), 231);
    let copies = [("core-tar", tar), ("core-zst", zst), ("core-xz", xz)];
    for (repo, bytes) in &copies {
        assert_eq!(
            &parse_sync_db(bytes).expect("read the database"),
            &expected,
            "{repo}"
        );
    }
    // pacman reads each copy as the same repository content.
    let databases: Vec<_> = copies
        .into_iter()
        .map(|(repo, bytes)| (repo, "db", bytes))
        .collect();
    let sandbox = SyncSandbox::new(&databases);
    let pacman: Vec<String> = sandbox
        .pacman(&["-Sl"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(list_lines(&sandbox, |_| expected.clone()), pacman);
}

/// A `.files` database like repo-add's: each entry's `desc` and a `files`
/// list, as a gzip tar.
fn files_database(entries: &[SyncEntry], desc_of: impl Fn(&SyncEntry) -> Vec<u8>) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for entry in entries {
        let dir = format!("{}-{}", entry.name, entry.version);
        let files = format!(
            "%FILES%\nusr/\nusr/share/\nusr/share/{0}/\nusr/share/{0}/README\n\n",
            entry.name
        );
        for (file, data) in [("desc", desc_of(entry)), ("files", files.into_bytes())] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, format!("{dir}/{file}"), data.as_slice())
                .expect("append to the archive");
        }
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the archive")
}

#[test]
fn files_database_matches_pacman_file_list() {
    let Some(dir) = fixtures() else { return };
    let core_dir = dir.join("core-extracted");
    let entries = read_sync_db(&dir.join("core.db")).expect("read core.db");
    let files_db = files_database(&entries, |entry| {
        std::fs::read(core_dir.join(format!("{}-{}/desc", entry.name, entry.version)))
            .expect("read extracted desc")
    });
    let with_files = parse_sync_db(&files_db).expect("read the .files database");
    let sandbox = SyncSandbox::new(&[
        (
            "core",
            "db",
            std::fs::read(dir.join("core.db")).expect("read fixture"),
        ),
        ("core", "files", files_db),
    ]);
    let pacman: Vec<String> = sandbox
        .pacman(&["-Fl"])
        .lines()
        .map(str::to_owned)
        .collect();
    let ours: Vec<String> = with_files
        .iter()
        .flat_map(|e| e.files.iter().map(move |file| format!("{} {file}", e.name)))
        .collect();
    assert_eq!(ours.len(), 4 * 231);
    assert_eq!(ours, pacman);
    // Apart from the file lists, a .files database reads like the .db.
    let without_files: Vec<SyncEntry> = with_files
        .into_iter()
        .map(|e| SyncEntry {
            files: Vec::new(),
            ..e
        })
        .collect();
    assert_eq!(without_files, entries);
}
