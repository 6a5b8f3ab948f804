//! The files of the package archive on disk, named by the sha256 of their
//! content: `objects/ab/abcdef…`. One copy per content however many targets
//! use it.
//!
//! A file is written under `tmp/`, fsynced, checked, then renamed into
//! `objects/` and the directory fsynced: a crash leaves at most a file in
//! `tmp/` (swept at the next start), never a half file under its hash.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// What the disk side of the archive can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "the package archive is full: {needed} more bytes would exceed the limit of {limit} bytes ({used} used); nothing was stored"
    )]
    Full { needed: u64, used: u64, limit: u64 },
    #[error("content has sha256 {actual}, expected {expected}; nothing was stored")]
    HashMismatch { expected: String, actual: String },
    #[error("stored file {sha256} is damaged: its content now hashes to {actual}")]
    Damaged { sha256: String, actual: String },
    #[error("stored file {0} is missing")]
    Missing(String),
    #[error("archive I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The archive's directory and its size limit.
#[derive(Debug, Clone)]
pub struct PackageDisk {
    root: PathBuf,
    limit: Option<u64>,
    /// Bytes under `objects/`, counted at open and kept up to date; the
    /// lock also makes the limit check and the rename one step.
    used: Arc<Mutex<u64>>,
}

/// A file being written under `tmp/`; dropped unfinished, it is removed.
#[derive(Debug)]
pub struct Ingest {
    disk: PackageDisk,
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
}

/// A file now in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    /// False when the same content was already there.
    pub new: bool,
}

/// Leftovers of `tmp/` older than this are swept (a writer that old died).
const STALE_TMP: Duration = Duration::from_secs(3600);

impl PackageDisk {
    /// Opens (creating) the archive at `root`, sweeps stale temporary files
    /// and counts what is stored.
    pub fn open(root: &Path, limit: Option<u64>) -> Result<PackageDisk, DiskError> {
        for dir in [root.join("objects"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let disk = PackageDisk {
            root: root.to_owned(),
            limit,
            used: Arc::default(),
        };
        disk.sweep_tmp(STALE_TMP)?;
        let used = disk.objects()?.iter().map(|(_, size, _)| size).sum();
        *disk.lock_used() = used;
        Ok(disk)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn used(&self) -> u64 {
        *self.lock_used()
    }

    fn lock_used(&self) -> std::sync::MutexGuard<'_, u64> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where the file of `sha256` lives (whether or not it is there).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("__");
        self.root.join("objects").join(prefix).join(sha256)
    }

    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.path_of(sha256).is_file()
    }

    /// Starts writing a new file.
    pub fn begin(&self) -> Result<Ingest, DiskError> {
        let name = format!(
            "{}.part",
            uuid::Uuid::new_v4()
                .as_simple()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
        );
        let path = self.root.join("tmp").join(name);
        let file = File::create_new(&path).map_err(io_at(&path))?;
        Ok(Ingest {
            disk: self.clone(),
            file: Some(file),
            path,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores everything `reader` gives.
    pub fn store(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<Stored, DiskError> {
        let mut ingest = self.begin()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(io_at(&ingest.path))?;
            if n == 0 {
                break;
            }
            ingest.write(&buf[..n])?;
        }
        ingest.finish(expected)
    }

    /// Re-hashes the stored file of `sha256`.
    pub fn check(&self, sha256: &str) -> Result<u64, DiskError> {
        let path = self.path_of(sha256);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DiskError::Missing(sha256.to_owned()));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let (actual, size) = hash_reader(&mut file).map_err(io_at(&path))?;
        if actual != sha256 {
            return Err(DiskError::Damaged {
                sha256: sha256.to_owned(),
                actual,
            });
        }
        Ok(size)
    }

    /// Removes the file of `sha256`; returns the bytes freed.
    pub fn remove(&self, sha256: &str) -> Result<u64, DiskError> {
        let path = self.path_of(sha256);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut used = self.lock_used();
        fs::remove_file(&path).map_err(io_at(&path))?;
        *used = used.saturating_sub(size);
        Ok(size)
    }

    /// Every stored file: sha256, size and modification time.
    pub fn objects(&self) -> Result<Vec<(String, u64, SystemTime)>, DiskError> {
        let top = self.root.join("objects");
        let mut out = Vec::new();
        for prefix in fs::read_dir(&top).map_err(io_at(&top))? {
            let prefix = prefix.map_err(io_at(&top))?.path();
            if !prefix.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&prefix).map_err(io_at(&prefix))? {
                let entry = entry.map_err(io_at(&prefix))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry.metadata().map_err(io_at(&entry.path()))?;
                if is_sha256(&name) && meta.is_file() {
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((name, meta.len(), mtime));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes files under `tmp/` older than `age`; returns how many.
    pub fn sweep_tmp(&self, age: Duration) -> Result<usize, DiskError> {
        let tmp = self.root.join("tmp");
        let mut removed = 0;
        let now = SystemTime::now();
        for entry in fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let path = entry.map_err(io_at(&tmp))?.path();
            let old = fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= age);
            if old && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Ingest {
    /// Appends `chunk`; refuses as soon as the file could not fit.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), DiskError> {
        let written = self.written + chunk.len() as u64;
        if let Some(limit) = self.disk.limit {
            let used = self.disk.used();
            if used + written > limit {
                return Err(DiskError::Full {
                    needed: written,
                    used,
                    limit,
                });
            }
        }
        let file = self.file.as_mut().ok_or_else(|| DiskError::Io {
            path: self.path.clone(),
            source: io::Error::other("already finished"),
        })?;
        file.write_all(chunk).map_err(io_at(&self.path))?;
        self.hasher.update(chunk);
        self.written = written;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The sha256 of what was written so far.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The temporary file, for reading it back before it is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the content against `expected`, then moves it under its hash.
    pub fn finish(mut self, expected: Option<&str>) -> Result<Stored, DiskError> {
        let sha256 = self.sha256();
        if let Some(e) = expected
            && !e.eq_ignore_ascii_case(&sha256)
        {
            return Err(DiskError::HashMismatch {
                expected: e.to_owned(),
                actual: sha256,
            });
        }
        let file = self.file.take().ok_or_else(|| DiskError::Io {
            path: self.path.clone(),
            source: io::Error::other("already finished"),
        })?;
        let dest = self.disk.path_of(&sha256);
        let dir = dest.parent().unwrap_or(&self.disk.root).to_owned();
        // A whole copy already there is kept (the new one is not even
        // synced); a damaged one is replaced.
        let existing = match self.disk.check(&sha256) {
            Ok(_) => {
                drop(file);
                let _ = fs::remove_file(&self.path);
                return Ok(Stored {
                    sha256,
                    size: self.written,
                    new: false,
                });
            }
            Err(DiskError::Missing(_)) => None,
            Err(_) => fs::metadata(&dest).ok().map(|m| m.len()),
        };
        file.sync_all().map_err(io_at(&self.path))?;
        drop(file);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut used = self.disk.lock_used();
        let freed = existing.unwrap_or(0);
        if let Some(limit) = self.disk.limit
            && (*used - freed.min(*used)) + self.written > limit
        {
            return Err(DiskError::Full {
                needed: self.written,
                used: *used,
                limit,
            });
        }
        fs::rename(&self.path, &dest).map_err(io_at(&dest))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&dir))?;
        *used = used.saturating_sub(freed) + self.written;
        Ok(Stored {
            sha256,
            size: self.written,
            new: existing.is_none(),
        })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// sha256 (hex) and length of everything `r` gives.
pub fn hash_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn stores_once_per_content() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = PackageDisk::open(dir.path(), None).expect("open");
        let a = disk.store(&mut &b"hello"[..], None).expect("store");
        let b = disk
            .store(&mut &b"hello"[..], Some(&sha(b"hello")))
            .expect("again");
        assert_eq!(a.sha256, sha(b"hello"));
        assert!(a.new && !b.new);
        assert_eq!(disk.objects().expect("list").len(), 1);
        assert_eq!(disk.used(), 5);
        assert_eq!(disk.check(&a.sha256).expect("check"), 5);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn a_wrong_hash_stores_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = PackageDisk::open(dir.path(), None).expect("open");
        let err = disk
            .store(&mut &b"hello"[..], Some(&sha(b"other")))
            .expect_err("mismatch");
        assert!(matches!(err, DiskError::HashMismatch { .. }), "{err}");
        assert!(disk.objects().expect("list").is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn the_limit_refuses_without_a_trace() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = PackageDisk::open(dir.path(), Some(10)).expect("open");
        disk.store(&mut &b"123456"[..], None).expect("fits");
        let err = disk
            .store(&mut &b"abcdef"[..], None)
            .expect_err("over the limit");
        assert!(
            matches!(
                err,
                DiskError::Full {
                    limit: 10,
                    used: 6,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("archive is full"), "{err}");
        assert_eq!(disk.objects().expect("list").len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
        disk.store(&mut &b"1234"[..], None).expect("exactly full");
        assert_eq!(disk.used(), 10);
    }

    #[test]
    fn damage_is_found_and_stale_parts_swept() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = PackageDisk::open(dir.path(), None).expect("open");
        let s = disk.store(&mut &b"payload"[..], None).expect("store");
        fs::write(disk.path_of(&s.sha256), b"pAyload").expect("corrupt");
        assert!(matches!(
            disk.check(&s.sha256),
            Err(DiskError::Damaged { .. })
        ));
        let again = disk.store(&mut &b"payload"[..], None).expect("repair");
        assert!(!again.new);
        assert_eq!(disk.check(&s.sha256).expect("whole again"), 7);
        let mut part = disk.begin().expect("begin");
        part.write(b"half").expect("write");
        std::mem::forget(part);
        assert_eq!(disk.sweep_tmp(Duration::ZERO).expect("sweep"), 1);
        let reopened = PackageDisk::open(dir.path(), None).expect("reopen");
        assert_eq!(reopened.used(), 7);
    }
}
