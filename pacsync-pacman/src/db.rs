//! pacman's databases on disk: the local database (`DBPath/local/`) and sync
//! database files. Parsing is `pacsync_core`'s; this module finds and reads
//! the files and names the file in every error.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use pacsync_core::Version;
use pacsync_core::desc::{DescError, MAX_DESC_LEN};
use pacsync_core::localdb::{LocalPackage, parse_local_desc, split_entry_name};
use pacsync_core::syncdb::{SyncDbError, SyncDbLimits, SyncEntry, parse_sync_db};
use thiserror::Error;

/// The local database layout pacman 5.x and 6.x write (`ALPM_DB_VERSION`).
pub const LOCAL_DB_VERSION: u32 = 9;

/// Why a database could not be read; every variant names the file.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: {error}", path.display())]
    Desc { path: PathBuf, error: DescError },
    #[error("{}: not a NAME-PKGVER-PKGREL directory name", path.display())]
    BadEntryName { path: PathBuf },
    #[error("{}: describes {found}, but its directory is named for {expected}", path.display())]
    Inconsistent {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{}: missing in a non-empty local database (run pacman-db-upgrade)", path.display())]
    MissingDbVersion { path: PathBuf },
    #[error("{}: local database version {found:?}, pacsync reads version {LOCAL_DB_VERSION}", path.display())]
    UnsupportedDbVersion { path: PathBuf, found: String },
    #[error("{}: package {name} is installed twice", path.display())]
    Duplicate { path: PathBuf, name: String },
    #[error("{}: {error}", path.display())]
    SyncDb { path: PathBuf, error: SyncDbError },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DbError + '_ {
    move |error| DbError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Every installed package with its full `desc`, sorted by name.
///
/// A missing `local/` directory is an empty database, as pacman sees it.
pub fn read_local_db(dbpath: &Path) -> Result<Vec<LocalPackage>, DbError> {
    let Some((local, entries)) = local_entries(dbpath)? else {
        return Ok(Vec::new());
    };
    // Read one after another: two threads measured no faster on a warm
    // cache (2,000 entries in ~30 ms either way) and cost more CPU.
    let mut packages = entries
        .iter()
        .map(|dir| read_local_entry(&local, dir))
        .collect::<Result<Vec<_>, _>>()?;
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = packages.windows(2).find(|p| p[0].name == p[1].name) {
        return Err(DbError::Duplicate {
            path: local,
            name: pair[0].name.clone(),
        });
    }
    Ok(packages)
}

fn read_local_entry(local: &Path, dir: &str) -> Result<LocalPackage, DbError> {
    let path = local.join(dir).join("desc");
    let Some((name, version)) = split_entry_name(dir) else {
        return Err(DbError::BadEntryName {
            path: local.join(dir),
        });
    };
    let mut bytes = Vec::new();
    fs::File::open(&path)
        // One byte past the cap is enough for the parser to refuse it.
        .and_then(|file| file.take(MAX_DESC_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(io_error(&path))?;
    let package = parse_local_desc(&bytes).map_err(|error| DbError::Desc {
        path: path.clone(),
        error,
    })?;
    if package.name != name || package.version.as_str() != version {
        return Err(DbError::Inconsistent {
            path,
            found: format!("{} {}", package.name, package.version),
            expected: format!("{name} {version}"),
        });
    }
    Ok(package)
}

/// Names and versions of the installed packages, sorted by name, from the
/// directory names alone (what `pacman -Q` reads).
pub fn read_local_names(dbpath: &Path) -> Result<Vec<(String, Version)>, DbError> {
    let Some((local, entries)) = local_entries(dbpath)? else {
        return Ok(Vec::new());
    };
    let mut names = entries
        .iter()
        .map(|dir| match split_entry_name(dir) {
            Some((name, version)) => Ok((name.to_owned(), Version::from(version))),
            None => Err(DbError::BadEntryName {
                path: local.join(dir),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = names.windows(2).find(|p| p[0].0 == p[1].0) {
        return Err(DbError::Duplicate {
            path: local,
            name: pair[0].0.clone(),
        });
    }
    Ok(names)
}

/// The package directories of `dbpath/local`, after checking the database
/// version as pacman does; `None` when there is no local database yet.
fn local_entries(dbpath: &Path) -> Result<Option<(PathBuf, Vec<String>)>, DbError> {
    fs::metadata(dbpath).map_err(io_error(dbpath))?;
    let local = dbpath.join("local");
    let listing = match fs::read_dir(&local) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        listing => listing.map_err(io_error(&local))?,
    };
    let mut entries = Vec::new();
    let mut anything = false;
    for entry in listing {
        let entry = entry.map_err(io_error(&local))?;
        anything = true;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        // pacman follows symlinks here (stat), so a linked entry counts.
        let is_dir =
            kind.is_dir() || (kind.is_symlink() && fs::metadata(&path).is_ok_and(|m| m.is_dir()));
        if !is_dir {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => entries.push(name),
            Err(_) => return Err(DbError::BadEntryName { path }),
        }
    }
    check_db_version(&local, anything)?;
    Ok(Some((local, entries)))
}

/// pacman refuses a local database whose `ALPM_DB_VERSION` is missing (unless
/// the database is empty) or different from the version it writes.
fn check_db_version(local: &Path, non_empty: bool) -> Result<(), DbError> {
    let path = local.join("ALPM_DB_VERSION");
    let text = match fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !non_empty => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DbError::MissingDbVersion { path });
        }
        read => read.map_err(io_error(&path))?,
    };
    let found = String::from_utf8_lossy(&text).trim().to_owned();
    if found.parse::<u32>() != Ok(LOCAL_DB_VERSION) {
        return Err(DbError::UnsupportedDbVersion { path, found });
    }
    Ok(())
}

/// Every package of a sync database file (`core.db`, `extra.files`), sorted
/// by name.
pub fn read_sync_db(path: &Path) -> Result<Vec<SyncEntry>, DbError> {
    let max = SyncDbLimits::default().max_decompressed;
    let len = fs::metadata(path).map_err(io_error(path))?.len();
    // No compression makes data larger, so a bigger file cannot fit the cap.
    if len > max {
        return Err(DbError::SyncDb {
            path: path.to_owned(),
            error: SyncDbError::TooLarge { max },
        });
    }
    let bytes = fs::read(path).map_err(io_error(path))?;
    parse_sync_db(&bytes).map_err(|error| DbError::SyncDb {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: &str = "%NAME%\nfoo\n\n%VERSION%\n1.0-1\n\n";

    fn scratch() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pacsync-db-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("local")).expect("create scratch dir");
        dir
    }

    fn add(dbpath: &Path, entry: &str, desc: &str) {
        let dir = dbpath.join("local").join(entry);
        fs::create_dir_all(&dir).expect("create entry");
        fs::write(dir.join("desc"), desc).expect("write desc");
    }

    #[test]
    fn reads_names_and_descs() {
        let db = scratch();
        fs::write(db.join("local/ALPM_DB_VERSION"), "9\n").expect("write");
        add(&db, "foo-1.0-1", DESC);
        add(
            &db,
            "a-b-2:3-4",
            "%NAME%\na-b\n\n%VERSION%\n2:3-4\n\n%REASON%\n1\n\n",
        );
        let names = read_local_names(&db).expect("readable");
        assert_eq!(
            names,
            [
                ("a-b".into(), "2:3-4".into()),
                ("foo".into(), "1.0-1".into())
            ]
        );
        let packages = read_local_db(&db).expect("readable");
        let got: Vec<_> = packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        assert_eq!(got, names);
        fs::remove_dir_all(db).expect("clean up");
    }

    #[test]
    fn missing_local_dir_is_empty_and_missing_dbpath_is_an_error() {
        let db = scratch();
        fs::remove_dir(db.join("local")).expect("remove");
        assert_eq!(read_local_names(&db).expect("empty"), []);
        assert_eq!(read_local_db(&db).expect("empty"), []);
        let err = read_local_db(&db.join("nope")).expect_err("no dbpath");
        assert!(matches!(err, DbError::Io { .. }), "{err}");
        fs::remove_dir_all(db).expect("clean up");
    }

    #[test]
    fn database_version_is_checked() {
        let db = scratch();
        assert_eq!(read_local_names(&db).expect("empty without version"), []);
        add(&db, "foo-1.0-1", DESC);
        let err = read_local_names(&db).expect_err("needs a version");
        assert!(
            err.to_string().ends_with(
                "ALPM_DB_VERSION: missing in a non-empty local database (run pacman-db-upgrade)"
            ),
            "{err}"
        );
        fs::write(db.join("local/ALPM_DB_VERSION"), "8\n").expect("write");
        let err = read_local_db(&db).expect_err("old version");
        assert!(
            err.to_string()
                .ends_with(r#"local database version "8", pacsync reads version 9"#),
            "{err}"
        );
        fs::remove_dir_all(db).expect("clean up");
    }

    #[test]
    fn errors_name_the_file() {
        let db = scratch();
        fs::write(db.join("local/ALPM_DB_VERSION"), "9\n").expect("write");
        add(
            &db,
            "foo-1.0-1",
            "%NAME%\nfoo\n\n%VERSION%\n1.0-1\n\n%SIZE%\nbig\n\n",
        );
        let err = read_local_db(&db).expect_err("bad size").to_string();
        let desc = db.join("local/foo-1.0-1/desc");
        assert_eq!(
            err,
            format!(
                r#"{}: line 8: %SIZE% value "big" is not a decimal number"#,
                desc.display()
            )
        );
        add(&db, "foo-1.0-1", "%NAME%\nbar\n\n%VERSION%\n1.0-1\n\n");
        let err = read_local_db(&db).expect_err("inconsistent").to_string();
        assert_eq!(
            err,
            format!(
                "{}: describes bar 1.0-1, but its directory is named for foo 1.0-1",
                desc.display()
            )
        );
        fs::remove_dir_all(db.join("local/foo-1.0-1")).expect("remove");
        add(&db, "foo", DESC);
        let err = read_local_names(&db).expect_err("bad name").to_string();
        assert!(
            err.ends_with("/local/foo: not a NAME-PKGVER-PKGREL directory name"),
            "{err}"
        );
        fs::remove_dir_all(db).expect("clean up");
    }

    #[test]
    fn sync_errors_name_the_file() {
        let db = scratch();
        let file = db.join("core.db");
        fs::write(&file, "not a database").expect("write");
        let err = read_sync_db(&file).expect_err("not a database").to_string();
        assert_eq!(
            err,
            format!(
                "{}: not a sync database: neither gzip, zstd, xz nor tar data",
                file.display()
            )
        );
        fs::remove_dir_all(db).expect("clean up");
    }
}
