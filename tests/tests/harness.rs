//! The harness against the real pacman and repo-add: package files, repos
//! and sandboxes behave as on Arch, and generated databases read back
//! exactly.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use pacsync_core::InstallReason;
use pacsync_tests::desc::{local_desc, local_files, sync_desc};
use pacsync_tests::{
    DbCompression, LocalInstall, PackageSpec, Repo, Sandbox, ScratchDir, SyncFile,
    generate_local_db, generate_sync_db, require_binary, require_pacman_sandbox, verify_local_db,
    verify_sync_db,
};
use sha2::{Digest, Sha256};

/// In pacman's order, lowest first.
const AWKWARD_ASCENDING: [&str; 6] = [
    "0.2.0_beta-11",
    "1.0rc1-1",
    "1.0-1",
    "2.38.0+r5+g1a2b-1",
    "2.38.0+r5+g1a2b-1.1",
    "1:2.0-1",
];

/// A repository "test" holding `specs` and a sandbox that has synced it;
/// `None` when the machine cannot run pacman transactions (outside CI).
fn setup(specs: &[PackageSpec]) -> Option<(Repo, Sandbox)> {
    if !require_pacman_sandbox() {
        return None;
    }
    let repo = Repo::new("test").expect("creating the repository");
    repo.add(specs).expect("adding packages");
    let sandbox = Sandbox::new(&[&repo]).expect("creating the sandbox");
    sandbox.sync_dbs().expect("syncing");
    Some((repo, sandbox))
}

fn packages(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect()
}

fn versioned(version: &str) -> PackageSpec {
    PackageSpec::new("awkward", version).file("usr/share/awkward/version", version)
}

fn payload(sandbox: &Sandbox) -> Option<String> {
    fs::read_to_string(sandbox.root().join("usr/share/awkward/version")).ok()
}

#[test]
fn awkward_versions_upgrade_downgrade_change_reason_and_remove() {
    let Some((repo, sandbox)) = setup(&[versioned(AWKWARD_ASCENDING[0])]) else {
        return;
    };
    sandbox.install(&["awkward"]).expect("installing");
    assert_eq!(
        sandbox.query().expect("-Q"),
        packages(&[("awkward", AWKWARD_ASCENDING[0])])
    );
    assert_eq!(payload(&sandbox).as_deref(), Some(AWKWARD_ASCENDING[0]));

    for version in &AWKWARD_ASCENDING[1..] {
        repo.add(&[versioned(version)])
            .expect("adding the next version");
        sandbox.sync_dbs().expect("syncing");
        sandbox.install(&["awkward"]).expect("upgrading");
        assert_eq!(
            sandbox.query().expect("-Q"),
            packages(&[("awkward", version)])
        );
        assert_eq!(payload(&sandbox).as_deref(), Some(*version));
    }

    // Older files stay in the repository directory; -U takes them back.
    let older = repo
        .package_path("awkward", "1.0rc1-1")
        .expect("older file");
    sandbox
        .install_files(&[older])
        .expect("downgrading from a file");
    assert_eq!(
        sandbox.query().expect("-Q"),
        packages(&[("awkward", "1.0rc1-1")])
    );
    let oldest = repo
        .package_url("awkward", AWKWARD_ASCENDING[0])
        .expect("oldest URL");
    sandbox
        .install_files(&[oldest])
        .expect("downgrading from a URL");
    assert_eq!(
        sandbox.query().expect("-Q"),
        packages(&[("awkward", AWKWARD_ASCENDING[0])])
    );
    assert_eq!(payload(&sandbox).as_deref(), Some(AWKWARD_ASCENDING[0]));

    sandbox.set_reason("awkward", true).expect("--asdeps");
    assert_eq!(sandbox.query_dependencies().expect("-Qd").len(), 1);
    assert!(sandbox.query_explicit().expect("-Qe").is_empty());
    sandbox.set_reason("awkward", false).expect("--asexplicit");
    assert!(sandbox.query_dependencies().expect("-Qd").is_empty());
    assert_eq!(sandbox.query_explicit().expect("-Qe").len(), 1);

    sandbox.remove(&["awkward"]).expect("removing");
    assert!(sandbox.query().expect("-Q on an empty root").is_empty());
    assert_eq!(payload(&sandbox), None, "the payload went with the package");
}

#[test]
fn awkward_versions_install_side_by_side() {
    let specs: Vec<PackageSpec> = AWKWARD_ASCENDING
        .iter()
        .enumerate()
        .map(|(i, version)| PackageSpec::new(format!("awkward{i}"), *version))
        .collect();
    let Some((_repo, sandbox)) = setup(&specs) else {
        return;
    };
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    sandbox.install(&names).expect("installing all");
    let want: BTreeMap<String, String> = specs
        .iter()
        .map(|s| (s.name.clone(), s.version.clone()))
        .collect();
    assert_eq!(sandbox.query().expect("-Q"), want);
}

#[test]
fn dependencies_and_providers_are_installed_as_dependencies() {
    let Some((_repo, sandbox)) = setup(&[
        PackageSpec::new("app", "1.0-1").depends(["lib>=2.0", "virtual-shell"]),
        PackageSpec::new("lib", "2.1-1").depends(["base-lib"]),
        PackageSpec::new("base-lib", "1:0.1-3"),
        PackageSpec::new("real-shell", "5.0-1").provides(["virtual-shell"]),
    ]) else {
        return;
    };
    sandbox.install(&["app"]).expect("installing app");
    assert_eq!(
        sandbox.query().expect("-Q"),
        packages(&[
            ("app", "1.0-1"),
            ("base-lib", "1:0.1-3"),
            ("lib", "2.1-1"),
            ("real-shell", "5.0-1"),
        ])
    );
    assert_eq!(
        sandbox.query_dependencies().expect("-Qd"),
        packages(&[
            ("base-lib", "1:0.1-3"),
            ("lib", "2.1-1"),
            ("real-shell", "5.0-1")
        ])
    );
    assert_eq!(
        sandbox.query_explicit().expect("-Qe"),
        packages(&[("app", "1.0-1")])
    );
}

#[test]
fn a_conflict_fails_with_pacmans_reason() {
    let Some((_repo, sandbox)) = setup(&[
        PackageSpec::new("left", "1.0-1").conflicts(["right"]),
        PackageSpec::new("right", "1.0-1"),
    ]) else {
        return;
    };
    sandbox.install(&["right"]).expect("installing right");
    let err = sandbox
        .install(&["left"])
        .expect_err("left conflicts with right");
    assert_eq!(err.code(), Some(1), "{err}");
    assert!(
        err.to_string().contains("left and right are in conflict"),
        "{err}"
    );
    assert!(
        err.stderr()
            .contains("unresolvable package conflicts detected"),
        "{err}"
    );
    assert!(err.command_line().contains("-S left"), "{err}");
    assert_eq!(
        sandbox.query().expect("-Q"),
        packages(&[("right", "1.0-1")])
    );
}

#[test]
fn a_removal_that_breaks_a_dependency_fails() {
    let Some((_repo, sandbox)) = setup(&[
        PackageSpec::new("needy", "1.0-1").depends(["needed>=1"]),
        PackageSpec::new("needed", "1.0-1"),
    ]) else {
        return;
    };
    sandbox.install(&["needy"]).expect("installing");
    let err = sandbox.remove(&["needed"]).expect_err("needy needs it");
    assert_eq!(err.code(), Some(1), "{err}");
    // pacman prints the reason on stdout and only a summary on stderr.
    assert!(
        err.stdout()
            .contains("removing needed breaks dependency 'needed>=1' required by needy"),
        "{err}"
    );
    assert!(
        err.stderr().contains("could not satisfy dependencies"),
        "{err}"
    );
    assert_eq!(sandbox.query().expect("-Q").len(), 2);
}

#[test]
fn unknown_targets_and_vanished_files_fail() {
    let Some((repo, sandbox)) = setup(&[PackageSpec::new("kept", "1.0-1")]) else {
        return;
    };
    let err = sandbox.install(&["absent"]).expect_err("no such package");
    assert_eq!(err.code(), Some(1), "{err}");
    assert!(err.stderr().contains("target not found: absent"), "{err}");

    // The database still lists the version, the mirror no longer has it.
    repo.delete_package_file("kept", "1.0-1")
        .expect("deleting the file");
    assert!(repo.package_path("kept", "1.0-1").is_err());
    let err = sandbox.install(&["kept"]).expect_err("the file is gone");
    assert_eq!(err.code(), Some(1), "{err}");
    assert!(err.stderr().contains("failed retrieving file"), "{err}");
    assert!(sandbox.query().expect("-Q").is_empty());
}

#[test]
fn pacman_refuses_a_version_without_pkgrel() {
    let Some((repo, sandbox)) = setup(&[PackageSpec::new("norel", "1.0")]) else {
        return;
    };
    let file = repo.package_path("norel", "1.0").expect("repo-add took it");
    let err = sandbox
        .install_files(&[file])
        .expect_err("pacman wants a pkgrel");
    assert!(err.stderr().contains("invalid package version"), "{err}");
}

/// One `NAME-VERSION/desc` from a gzip sync database.
fn sync_db_desc(db: &Path, entry: &str) -> String {
    let file = fs::File::open(db).expect("opening the db");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted = format!("{entry}/desc");
    for member in archive.entries().expect("reading the db") {
        let mut member = member.expect("reading an entry");
        if member.path().expect("entry path").to_str() == Some(wanted.as_str()) {
            let mut desc = String::new();
            member.read_to_string(&mut desc).expect("reading desc");
            return desc;
        }
    }
    panic!("{wanted} not in {}", db.display());
}

/// The value of a one-line `%KEY%` field.
fn desc_field(desc: &str, key: &str) -> String {
    let mut lines = desc.lines();
    lines
        .find(|line| *line == format!("%{key}%"))
        .and_then(|_| lines.next())
        .unwrap_or_else(|| panic!("no %{key}% in\n{desc}"))
        .to_owned()
}

#[test]
fn rendered_descs_are_what_repo_add_and_pacman_write() {
    let rich = PackageSpec::new("rich", "1:2.38.0+r5+g1a2b-1.1")
        .base("rich-base")
        .licenses(["MIT", "GPL"])
        .depends(["plain>=1.0"])
        .optdepends(["python: for scripts"])
        .provides(["rich-libs=2", "librich.so=1-64"])
        .conflicts(["poor"])
        .replaces(["rich-legacy"])
        .groups(["grp-a", "grp-b"])
        .file("usr/bin/rich", "#!/bin/true\n")
        .file("usr/share/rich/data/x.txt", "x");
    // No files and size 0: pacman and repo-add leave different fields out.
    let plain = PackageSpec::new("plain", "1.0-1");
    let Some((repo, sandbox)) = setup(&[rich.clone(), plain.clone()]) else {
        return;
    };
    for spec in [&rich, &plain] {
        let real = sync_db_desc(&repo.db_path(), &spec.db_entry_name());
        let bytes = fs::read(repo.package_path(&spec.name, &spec.version).expect("file"))
            .expect("reading the package");
        let file = SyncFile {
            filename: spec.filename(),
            csize: bytes.len() as u64,
            md5sum: desc_field(&real, "MD5SUM"),
            sha256sum: hex::encode(Sha256::digest(&bytes)),
        };
        assert_eq!(real, sync_desc(spec, &file), "sync desc of {}", spec.name);
    }

    sandbox.install(&["rich"]).expect("installing");
    for (spec, reason) in [
        (&rich, InstallReason::Explicit),
        (&plain, InstallReason::Dependency),
    ] {
        let dir = sandbox.dbpath().join("local").join(spec.db_entry_name());
        let real = fs::read_to_string(dir.join("desc")).expect("reading desc");
        let install = LocalInstall {
            reason,
            install_date: desc_field(&real, "INSTALLDATE").parse().expect("a date"),
            validation: "sha256".into(),
        };
        assert_eq!(
            real,
            local_desc(spec, &install),
            "local desc of {}",
            spec.name
        );
        let files = fs::read_to_string(dir.join("files")).expect("reading files");
        assert_eq!(files, local_files(spec), "files of {}", spec.name);
    }
}

#[test]
fn a_generated_local_db_reads_back_identically() {
    if !require_binary("pacman") {
        return;
    }
    let dir = ScratchDir::new("pacsync-localdb-").expect("temp dir");
    let mut generated = generate_local_db(dir.path(), 200, 42).expect("generating");
    assert_eq!(generated.len(), 200);
    verify_local_db(dir.path(), &generated).expect("pacman reads what was generated");

    // The check is not vacuous: a wrong expectation is caught.
    generated[17].spec.version.push_str(".1");
    let err = verify_local_db(dir.path(), &generated).expect_err("version differs");
    assert!(
        err.to_string().contains(&generated[17].spec.name),
        "{err:#}"
    );
}

#[test]
fn generated_sync_dbs_are_read_by_pacman() {
    if !require_binary("pacman") {
        return;
    }
    let dir = ScratchDir::new("pacsync-syncdb-").expect("temp dir");
    for (compression, file) in [
        (DbCompression::Gzip, "gzip.db"),
        (DbCompression::Zstd, "zstd.db"),
    ] {
        let path = dir.path().join(file);
        let mut generated = generate_sync_db(&path, 300, 7, compression).expect("generating");
        assert_eq!(generated.len(), 300);
        verify_sync_db(&path, &generated).expect("pacman -Sl reads what was generated");

        let missing = generated.pop().expect("300 packages");
        let err = verify_sync_db(&path, &generated).expect_err("one package too many");
        assert!(err.to_string().contains(&missing.name), "{err:#}");
    }
}
