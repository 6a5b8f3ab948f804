//! The package archive: the exact package files of every pool target, kept
//! once per content on the server's disk ([`disk`]), recorded in the
//! database ([`records`]), checked ([`Archive::verify`]), collected
//! ([`Archive::gc`]), filled from mirrors ([`fill`]) and published as
//! pacman repositories ([`repodb`], [`api`]). See docs/archive.md.

pub mod api;
pub mod cli;
pub mod disk;
pub mod fill;
pub mod pkginfo;
pub mod records;
pub mod repodb;

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use disk::{DiskError, PackageDisk};
use records::ArchiveFileRow;

use crate::store::{Store, StoreError, StoreResult, now_ms};

/// Objects on disk without a row are left alone this long by `gc`: an
/// upload renames its file before it records the row.
const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// The archive: its disk and the store that records it.
#[derive(Debug, Clone)]
pub struct Archive {
    pub disk: PackageDisk,
    /// Where missing files are downloaded from ([`fill`]).
    pub mirrors: std::sync::Arc<crate::settings::MirrorSettings>,
    /// Held by the running fill: one at a time.
    fill_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// What an upload or import became.
#[derive(Debug, Clone, Serialize)]
pub struct Ingested {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub filename: String,
    pub size: u64,
    /// False when the archive already had this content.
    pub new: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    /// `filename (sha256): what is wrong`.
    pub damaged: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub kept: usize,
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub orphans_removed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub path: String,
    pub files: usize,
    pub bytes: u64,
    pub limit_bytes: Option<u64>,
    pub damaged: usize,
    /// The last fill from mirrors of each pool.
    pub fills: Vec<fill::FillReport>,
    /// What each pool's current target needs of the archive, by name.
    pub pools: Vec<PoolStorage>,
}

/// The package files a pool's current target needs, as the archive has
/// them: what a machine of the pool can be synced to from the archive
/// alone, and what it takes on disk.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStorage {
    pub pool_id: String,
    pub name: String,
    /// `None` while the pool has no target (then every count is 0).
    pub target_id: Option<String>,
    /// Packages of the target.
    pub packages: usize,
    /// Of them, archived and sound.
    pub archived: usize,
    /// Archived, but the file no longer has its recorded hash.
    pub damaged: usize,
    /// Not archived.
    pub missing: usize,
    /// Bytes of the target's archived files (a file shared with other
    /// pools counts in each; it is stored once).
    pub bytes: u64,
}

/// [`PoolStorage`] of every pool, by name.
fn pool_storage(conn: &mut crate::store::DbConnection) -> StoreResult<Vec<PoolStorage>> {
    use crate::store::schema::pools;
    use diesel::prelude::*;
    let rows: Vec<(String, String, Option<String>)> = pools::table
        .order(pools::name)
        .select((pools::id, pools::name, pools::current_target_id))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (pool_id, name, current) in rows {
        let mut p = PoolStorage {
            pool_id,
            name,
            target_id: None,
            packages: 0,
            archived: 0,
            damaged: 0,
            missing: 0,
            bytes: 0,
        };
        if let Some(current) = current {
            let (target_id, target) = records::pool_target(conn, &p.pool_id, &current)?;
            p.target_id = Some(target_id);
            for (_, _, row) in records::files_of(conn, &target)? {
                p.packages += 1;
                match row {
                    None => p.missing += 1,
                    Some(r) if r.damaged_at.is_some() => p.damaged += 1,
                    Some(r) => {
                        p.archived += 1;
                        p.bytes += u64::try_from(r.size).unwrap_or(0);
                    }
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

impl Archive {
    pub fn open(settings: &crate::settings::ArchiveSettings) -> anyhow::Result<Archive> {
        use anyhow::Context as _;
        let disk = PackageDisk::open(&settings.dir, settings.max_bytes)
            .with_context(|| format!("opening the package archive {}", settings.dir.display()))?;
        Ok(Archive {
            disk,
            mirrors: std::sync::Arc::new(settings.mirrors.clone()),
            fill_lock: std::sync::Arc::default(),
        })
    }

    /// Stores a package file from `reader` (blocking), checks its
    /// `.PKGINFO` names the package the caller says it is, and records it.
    pub fn ingest(
        &self,
        store: &Store,
        reader: &mut dyn Read,
        claimed: Option<(&str, &str)>,
        signature: Option<Vec<u8>>,
        source: &str,
    ) -> StoreResult<Ingested> {
        let mut part = self.disk.begin().map_err(disk_error)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| {
                StoreError::invalid("upload_failed", format!("reading the upload: {e}"))
            })?;
            if n == 0 {
                break;
            }
            part.write(&buf[..n]).map_err(disk_error)?;
        }
        self.record(store, part, claimed, None, signature, source)
    }

    /// Keeps a fully written file: reads its `.PKGINFO`, checks it against
    /// what the caller claims and the expected hash, moves it under its
    /// hash and records it.
    pub fn record(
        &self,
        store: &Store,
        part: disk::Ingest,
        claimed: Option<(&str, &str)>,
        expected: Option<&str>,
        signature: Option<Vec<u8>>,
        source: &str,
    ) -> StoreResult<Ingested> {
        let info = std::fs::File::open(part.path())
            .map_err(pkginfo::PkgInfoError::from)
            .and_then(|mut f| pkginfo::read(&mut f))
            .map_err(|e| StoreError::invalid("not_a_package", e.to_string()))?;
        if let Some((name, version)) = claimed
            && (info.name != name || info.version != version)
        {
            return Err(StoreError::invalid(
                "package_mismatch",
                format!(
                    "the file's .PKGINFO says {} {}, not {name} {version}",
                    info.name, info.version
                ),
            ));
        }
        let stored = part.finish(expected).map_err(disk_error)?;
        let filename = format!(
            "{}{}",
            info.file_stem(),
            extension_of(&self.disk, &stored.sha256)
        );
        let row = ArchiveFileRow {
            sha256: stored.sha256.clone(),
            name: info.name.clone(),
            version: info.version.clone(),
            arch: info.arch.clone(),
            filename: filename.clone(),
            size: i64::try_from(stored.size).unwrap_or(i64::MAX),
            pkginfo: info.text,
            signature,
            source: source.to_owned(),
            created_at: now_ms(),
            damaged_at: None,
        };
        // Content already recorded whole, and no signature to add: nothing
        // to write.
        let known = !stored.new
            && row.signature.is_none()
            && read_blocking(store, |conn| records::get(conn, &row.sha256))?
                .is_some_and(|r| r.damaged_at.is_none());
        if !known {
            store.write_blocking(move |conn| records::insert(conn, &row))?;
        }
        Ok(Ingested {
            sha256: stored.sha256,
            name: info.name,
            version: info.version,
            filename,
            size: stored.size,
            new: stored.new,
        })
    }

    /// Re-hashes every recorded file; marks the damaged ones (which are
    /// then never served) and clears the mark of repaired ones.
    pub fn verify(&self, store: &Store) -> StoreResult<VerifyReport> {
        let rows = read_blocking(store, records::all)?;
        let mut report = VerifyReport::default();
        for row in rows {
            report.checked += 1;
            let result = self.disk.check(&row.sha256);
            let damaged_at = match &result {
                Ok(_) => None,
                Err(e) => {
                    report
                        .damaged
                        .push(format!("{} ({}): {e}", row.filename, row.sha256));
                    Some(row.damaged_at.unwrap_or_else(now_ms))
                }
            };
            if damaged_at != row.damaged_at {
                let sha = row.sha256.clone();
                store.write_blocking(move |conn| records::mark_damaged(conn, &sha, damaged_at))?;
            }
        }
        Ok(report)
    }

    /// Removes every file no retained target, machine state history or
    /// active operation references, and files on disk nothing records.
    pub fn gc(&self, store: &Store) -> StoreResult<GcReport> {
        let keep = read_blocking(store, records::referenced)?;
        let rows = read_blocking(store, records::all)?;
        let mut report = GcReport::default();
        let mut recorded = BTreeSet::new();
        for row in rows {
            if keep.contains(&(row.name.clone(), row.version.clone())) {
                report.kept += 1;
                recorded.insert(row.sha256);
                continue;
            }
            let sha = row.sha256.clone();
            // The row goes first: a file without a row is never served.
            store.write_blocking(move |conn| records::delete(conn, &sha))?;
            report.freed_bytes += self.disk.remove(&row.sha256).map_err(disk_error)?;
            report.removed.push(row.filename);
        }
        let now = SystemTime::now();
        for (sha, _, mtime) in self.disk.objects().map_err(disk_error)? {
            let old = now.duration_since(mtime).unwrap_or_default() >= ORPHAN_GRACE;
            if !recorded.contains(&sha)
                && old
                && read_blocking(store, |conn| records::get(conn, &sha))?.is_none()
            {
                report.freed_bytes += self.disk.remove(&sha).map_err(disk_error)?;
                report.orphans_removed += 1;
            }
        }
        self.disk.sweep_tmp(ORPHAN_GRACE).map_err(disk_error)?;
        Ok(report)
    }

    pub fn status(&self, store: &Store) -> StoreResult<Status> {
        let rows = read_blocking(store, records::all)?;
        Ok(Status {
            path: self.disk.root().display().to_string(),
            files: rows.len(),
            bytes: self.disk.used(),
            limit_bytes: self.disk.limit(),
            damaged: rows.iter().filter(|r| r.damaged_at.is_some()).count(),
            fills: self.fill_reports(),
            pools: read_blocking(store, pool_storage)?,
        })
    }
}

/// Runs `f` on a pooled connection of the calling (blocking) thread.
fn read_blocking<T>(
    store: &Store,
    f: impl FnOnce(&mut crate::store::DbConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut conn = store.blocking_conn()?;
    f(&mut conn)
}

/// The compression suffix (`.pkg.tar.zst`) of a stored file, from its
/// magic bytes.
fn extension_of(disk: &PackageDisk, sha256: &str) -> &'static str {
    let mut magic = [0u8; 6];
    let n = std::fs::File::open(disk.path_of(sha256))
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match &magic[..n] {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ".pkg.tar.zst",
        [0x1f, 0x8b, ..] => ".pkg.tar.gz",
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => ".pkg.tar.xz",
        _ => ".pkg.tar",
    }
}

/// Disk errors as store errors the API maps: a full archive is a conflict
/// the admin must resolve, a wrong hash a refused upload.
pub fn disk_error(e: DiskError) -> StoreError {
    match e {
        DiskError::Full { .. } => StoreError::conflict("archive_full", e.to_string()),
        DiskError::HashMismatch { .. } => StoreError::invalid("hash_mismatch", e.to_string()),
        DiskError::Damaged { .. } | DiskError::Missing(_) => {
            StoreError::conflict("archive_damaged", e.to_string())
        }
        DiskError::Io { .. } => StoreError::Other(e.into()),
    }
}
