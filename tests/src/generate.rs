//! Large realistic databases written directly in pacman's on-disk formats
//! (much faster than installing packages), and checks that the real pacman
//! reads them back as generated.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use pacsync_core::InstallReason;
use sha2::{Digest, Sha256};

use crate::command::run;
use crate::desc::{SyncFile, local_desc, local_files, sync_desc};
use crate::package::{PackageSpec, append_entry};
use crate::sandbox::query_packages;
use crate::scratch::ScratchDir;
use crate::synthetic::{SyntheticPackage, synthetic_packages};

/// Writes a local database of `n` synthetic packages under `dbpath`
/// (`local/ALPM_DB_VERSION` and `local/NAME-VERSION/{desc,files}`), exactly
/// as pacman 6 would after installing them, and returns the packages.
pub fn generate_local_db(
    dbpath: &Path,
    n: usize,
    seed: u64,
) -> anyhow::Result<Vec<SyntheticPackage>> {
    let local = dbpath.join("local");
    fs::create_dir_all(&local).with_context(|| format!("creating {}", local.display()))?;
    fs::write(local.join("ALPM_DB_VERSION"), "9\n")?;
    let packages = synthetic_packages(n, seed);
    for package in &packages {
        let dir = local.join(package.spec.db_entry_name());
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(
            dir.join("desc"),
            local_desc(&package.spec, &package.local_install()),
        )?;
        fs::write(dir.join("files"), local_files(&package.spec))?;
    }
    Ok(packages)
}

/// Compression of a sync database; pacman reads either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbCompression {
    Gzip,
    Zstd,
}

/// Writes a sync database (a tar of `NAME-VERSION/desc`, as repo-add
/// makes) of `n` synthetic packages to `path` and returns them. The package
/// files do not exist; their checksums are well-formed stand-ins.
pub fn generate_sync_db(
    path: &Path,
    n: usize,
    seed: u64,
    compression: DbCompression,
) -> anyhow::Result<Vec<PackageSpec>> {
    let specs: Vec<PackageSpec> = synthetic_packages(n, seed)
        .into_iter()
        .map(|p| p.spec)
        .collect();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut file = match compression {
        DbCompression::Gzip => {
            let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            write_sync_tar(gzip, &specs)?.finish()?
        }
        DbCompression::Zstd => write_sync_tar(zstd::Encoder::new(file, 3)?, &specs)?.finish()?,
    };
    file.flush()?;
    Ok(specs)
}

fn write_sync_tar<W: Write>(out: W, specs: &[PackageSpec]) -> anyhow::Result<W> {
    let mut tar = tar::Builder::new(out);
    for spec in specs {
        let entry = spec.db_entry_name();
        let desc = sync_desc(spec, &stand_in_file(spec));
        append_entry(&mut tar, &format!("{entry}/"), None, spec.builddate)?;
        append_entry(
            &mut tar,
            &format!("{entry}/desc"),
            Some(desc.as_bytes()),
            spec.builddate,
        )?;
    }
    Ok(tar.into_inner()?)
}

fn stand_in_file(spec: &PackageSpec) -> SyncFile {
    let digest = Sha256::digest(spec.filename().as_bytes());
    SyncFile {
        filename: spec.filename(),
        // Compressed packages are typically a third of their installed size.
        csize: (spec.installed_size() / 3).max(1),
        md5sum: hex::encode(&digest[..16]),
        sha256sum: hex::encode(digest),
    }
}

/// Checks with the real pacman that the local database under `dbpath` holds
/// exactly `expected`: `pacman -Q` lists every name and version, `-Qd` the
/// dependencies, and `-Qi` of a few packages shows their relations and
/// reason.
pub fn verify_local_db(dbpath: &Path, expected: &[SyntheticPackage]) -> anyhow::Result<()> {
    // Reading a local database needs no repositories; an empty config keeps
    // the host's pacman.conf out of it.
    let pacman = |args: &[&str]| {
        let mut cmd = Command::new("pacman");
        cmd.args(["--config", "/dev/null", "--color", "never", "--dbpath"])
            .arg(dbpath)
            .args(args)
            .env("LC_ALL", "C");
        cmd
    };
    let listed = query_packages(&mut pacman(&["-Q"]))?;
    compare_listing(&listed, expected.iter().map(|p| &p.spec))?;
    let dependencies = query_packages(&mut pacman(&["-Qd"]))?;
    compare_listing(
        &dependencies,
        expected
            .iter()
            .filter(|p| p.reason == InstallReason::Dependency)
            .map(|p| &p.spec),
    )?;

    let sample = sample(expected.iter().map(|p| &p.spec));
    let mut args = vec!["-Qi"];
    args.extend(sample.iter().map(|&i| expected[i].spec.name.as_str()));
    let output = run(&mut pacman(&args))?;
    let blocks = info_blocks(&String::from_utf8_lossy(&output.stdout));
    ensure!(
        blocks.len() == sample.len(),
        "-Qi gave {} packages",
        blocks.len()
    );
    for (block, &i) in blocks.iter().zip(&sample) {
        let package = &expected[i];
        check_info(block, &package.spec)?;
        let reason = match package.reason {
            InstallReason::Explicit => "Explicitly installed",
            InstallReason::Dependency => "Installed as a dependency for another package",
        };
        check_field(block, &package.spec, "Install Reason", reason)?;
    }
    Ok(())
}

/// Checks with the real pacman that the sync database at `db` lists exactly
/// `expected` (`pacman -Sl`), and that `-Si` of a few shows their metadata.
pub fn verify_sync_db(db: &Path, expected: &[PackageSpec]) -> anyhow::Result<()> {
    const REPO: &str = "generated";
    let scratch = ScratchDir::new("pacsync-verify-sync-")?;
    let sync_dir = scratch.path().join("db/sync");
    fs::create_dir_all(&sync_dir)?;
    let db = db
        .canonicalize()
        .with_context(|| format!("finding {}", db.display()))?;
    std::os::unix::fs::symlink(&db, sync_dir.join(format!("{REPO}.db")))?;
    let config = scratch.path().join("pacman.conf");
    fs::write(
        &config,
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Never\n\n[{REPO}]\nServer = file:///nonexistent\n"
        ),
    )?;
    let pacman = |args: &[&str]| {
        let mut cmd = Command::new("pacman");
        cmd.arg("--config")
            .arg(&config)
            .arg("--dbpath")
            .arg(scratch.path().join("db"))
            .args(["--color", "never"])
            .args(args)
            .env("LC_ALL", "C");
        cmd
    };
    let output = run(&mut pacman(&["-Sl", REPO]))?;
    let mut listed = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some(REPO), Some(name), Some(version), None) => {
                listed.insert(name.to_owned(), version.to_owned());
            }
            _ => bail!("unexpected -Sl line {line:?}"),
        }
    }
    compare_listing(&listed, expected.iter())?;

    let sample = sample(expected.iter());
    let mut args = vec!["-Si".to_owned()];
    args.extend(
        sample
            .iter()
            .map(|&i| format!("{REPO}/{}", expected[i].name)),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&mut pacman(&args))?;
    let blocks = info_blocks(&String::from_utf8_lossy(&output.stdout));
    ensure!(
        blocks.len() == sample.len(),
        "-Si gave {} packages",
        blocks.len()
    );
    for (block, &i) in blocks.iter().zip(&sample) {
        check_info(block, &expected[i])?;
        check_field(block, &expected[i], "Repository", REPO)?;
    }
    Ok(())
}

fn compare_listing<'a>(
    listed: &BTreeMap<String, String>,
    expected: impl Iterator<Item = &'a PackageSpec>,
) -> anyhow::Result<()> {
    let expected: BTreeMap<&str, &str> = expected
        .map(|s| (s.name.as_str(), s.version.as_str()))
        .collect();
    let mut problems = Vec::new();
    for (name, version) in &expected {
        match listed.get(*name) {
            None => problems.push(format!("missing {name} {version}")),
            Some(seen) if seen != version => {
                problems.push(format!("{name}: pacman says {seen}, generated {version}"));
            }
            Some(_) => {}
        }
    }
    for (name, version) in listed {
        if !expected.contains_key(name.as_str()) {
            problems.push(format!("unexpected {name} {version}"));
        }
    }
    ensure!(
        problems.is_empty(),
        "pacman listed {} packages, generated {}; first problems: {:?}",
        listed.len(),
        expected.len(),
        &problems[..problems.len().min(10)]
    );
    Ok(())
}

/// A few packages worth a detailed look: the ends, the middle, and the
/// ones with the most dependencies and the most other relations.
fn sample<'a>(specs: impl Iterator<Item = &'a PackageSpec> + Clone) -> Vec<usize> {
    let len = specs.clone().count();
    let most = |weight: fn(&PackageSpec) -> usize| {
        specs
            .clone()
            .enumerate()
            .max_by_key(|(i, spec)| (weight(spec), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    };
    let mut picks: Vec<usize> = [Some(0), Some(len / 2), len.checked_sub(1)]
        .into_iter()
        .chain([
            most(|s| s.depends.len()),
            most(|s| s.provides.len() + s.conflicts.len() + s.replaces.len() + s.groups.len()),
        ])
        .flatten()
        .filter(|&i| i < len)
        .collect();
    picks.sort_unstable();
    picks.dedup();
    picks
}

/// `-Qi`/`-Si` output: one `Key : value` map per package. Unwrapped because
/// stdout is not a terminal.
fn info_blocks(stdout: &str) -> Vec<BTreeMap<String, String>> {
    stdout
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter_map(|line| line.split_once(" : "))
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .collect()
        })
        .collect()
}

fn check_info(block: &BTreeMap<String, String>, spec: &PackageSpec) -> anyhow::Result<()> {
    let list = |values: &[String]| {
        if values.is_empty() {
            "None".to_owned()
        } else {
            values.join("  ")
        }
    };
    check_field(block, spec, "Name", &spec.name)?;
    check_field(block, spec, "Version", &spec.version)?;
    check_field(block, spec, "Description", &spec.description)?;
    check_field(block, spec, "Architecture", &spec.arch)?;
    check_field(block, spec, "Packager", &spec.packager)?;
    check_field(block, spec, "Depends On", &list(&spec.depends))?;
    check_field(block, spec, "Provides", &list(&spec.provides))?;
    check_field(block, spec, "Conflicts With", &list(&spec.conflicts))?;
    check_field(block, spec, "Replaces", &list(&spec.replaces))?;
    check_field(block, spec, "Groups", &list(&spec.groups))
}

fn check_field(
    block: &BTreeMap<String, String>,
    spec: &PackageSpec,
    key: &str,
    want: &str,
) -> anyhow::Result<()> {
    let seen = block.get(key).map(String::as_str);
    ensure!(
        seen == Some(want),
        "{}: pacman shows {key} {seen:?}, generated {want:?}",
        spec.name
    );
    Ok(())
}
