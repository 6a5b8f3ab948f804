//! Sync databases (`core.db`, `extra.files`, ...): a compressed tar of
//! `NAME-PKGVER-PKGREL/desc` (and `depends`, `files`) entries.
//!
//! The tar is read while it is decompressed, straight from the input bytes,
//! in a pipeline: one thread decompresses, one cuts the tar into batches of
//! package files and parses every other batch, and the caller's thread
//! parses the rest. Past the batches, the only allocations are the strings
//! a [`SyncEntry`] owns.

use std::io;
use std::sync::mpsc::sync_channel;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::desc::{DescError, DescReader, KnownFields, MAX_DESC_LEN};
use crate::version::Version;
use decompress::TarStream;

/// One package of a sync database.
///
/// Text fields a database may leave out are `Option`s; sizes and dates read
/// as zero when absent, as pacman reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    /// Package file name in the repository (`acl-2.2.53-1-x86_64.pkg.tar.xz`).
    pub filename: String,
    pub name: String,
    pub base: Option<String>,
    pub version: Version,
    pub desc: Option<String>,
    /// Size of the package file (download size).
    pub csize: u64,
    /// Installed size.
    pub isize: u64,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    /// Whether a signature is embedded (`%PGPSIG%`). pacsync leaves
    /// signature checks to pacman, so the signature itself is not kept.
    pub has_pgpsig: bool,
    pub url: Option<String>,
    pub licenses: Vec<String>,
    pub arch: Option<String>,
    /// Unix time; 0 when unknown.
    pub build_date: i64,
    pub packager: Option<String>,
    pub groups: Vec<String>,
    pub depends: Vec<String>,
    pub optdepends: Vec<String>,
    pub makedepends: Vec<String>,
    pub checkdepends: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub replaces: Vec<String>,
    /// The file list (`.files` databases only), paths without leading `/`.
    pub files: Vec<String>,
}

/// Caps against corrupt or hostile databases (decompression bombs, huge
/// fields). The defaults leave room for the largest real `.files` databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncDbLimits {
    /// Total size of the decompressed tar.
    pub max_decompressed: u64,
    /// Size of one `desc` or `depends` entry.
    pub max_desc: u64,
    /// Size of one `files` entry.
    pub max_files: u64,
}

impl Default for SyncDbLimits {
    fn default() -> Self {
        SyncDbLimits {
            max_decompressed: 4 << 30,
            max_desc: MAX_DESC_LEN as u64,
            max_files: 256 << 20,
        }
    }
}

/// Why a sync database could not be read. Entry paths are the paths inside
/// the tar (`acl-2.2.53-1/desc`).
#[derive(Debug, Error)]
pub enum SyncDbError {
    #[error("empty file, not a sync database")]
    Empty,
    #[error("not a sync database: neither gzip, zstd, xz nor tar data")]
    NotAnArchive,
    #[error("{0}-compressed databases are not supported (use gzip, zstd or xz)")]
    UnsupportedCompression(&'static str),
    #[error("corrupt {format} data{}: {error}", after.as_ref().map(|p| format!(" after entry {p}")).unwrap_or_default())]
    Corrupt {
        format: &'static str,
        after: Option<String>,
        error: io::Error,
    },
    #[error("database decompresses to more than {max} bytes")]
    TooLarge { max: u64 },
    #[error("entry {path:?}: absolute or `..` path")]
    UnsafePath { path: String },
    #[error("entry {path:?}: not a NAME-PKGVER-PKGREL/FILE path")]
    UnexpectedEntry { path: String },
    #[error("entry {path}: {len} bytes, the limit is {max}")]
    EntryTooLarge { path: String, len: u64, max: u64 },
    #[error("entry {path}: {error}")]
    Desc { path: String, error: DescError },
    #[error("entry {path}: %{key}% is {found:?} but the directory name says {expected:?}")]
    Mismatch {
        path: String,
        key: &'static str,
        found: String,
        expected: String,
    },
    #[error("entry {dir}/: no desc file")]
    MissingDesc { dir: String },
    #[error("package {name} appears twice")]
    Duplicate { name: String },
}

/// Reads a sync database with the default [`SyncDbLimits`].
pub fn parse_sync_db(bytes: &[u8]) -> Result<Vec<SyncEntry>, SyncDbError> {
    parse_sync_db_with_limits(bytes, &SyncDbLimits::default())
}

/// Reads a sync database (gzip, zstd, xz or plain tar, told apart by their
/// magic bytes). Entries come sorted by name, the order pacman lists them in.
pub fn parse_sync_db_with_limits(
    bytes: &[u8],
    limits: &SyncDbLimits,
) -> Result<Vec<SyncEntry>, SyncDbError> {
    decompress::with_tar(bytes, limits.max_decompressed, |tar| read_tar(tar, limits))
}

enum TarError {
    Db(SyncDbError),
    Io {
        after: Option<String>,
        error: io::Error,
    },
}

impl From<SyncDbError> for TarError {
    fn from(e: SyncDbError) -> Self {
        TarError::Db(e)
    }
}

/// Reads the packages of the tar: one thread frames it into batches of
/// files and parses about half of them, this one parses the others, so a
/// large database keeps two cores busy (three threads with decompression).
fn read_tar(
    reader: &mut (dyn TarStream + Send),
    limits: &SyncDbLimits,
) -> Result<Vec<SyncEntry>, TarError> {
    let (sender, receiver) = sync_channel(BATCHES_IN_FLIGHT);
    let (parsed, framed) = std::thread::scope(|scope| {
        let framer = scope.spawn(move || framing::frame(reader, limits, &sender));
        let mut all = Parsed::default();
        // Moving each batch's entries in as it comes frees its memory for
        // the next batches, while the other threads are still at work.
        let parsed = receiver.iter().try_for_each(|work| {
            let mut batch = work.parse()?;
            all.entries.append(&mut batch.entries);
            all.has_desc.append(&mut batch.has_desc);
            Ok::<_, SyncDbError>(())
        });
        // Stops the framing thread if it is still at work.
        drop(receiver);
        let framed = framer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (parsed.map(|()| all), framed)
    });
    // A parse error is about a file before wherever the framing stopped.
    let parsed = parsed?;
    framed?;
    Ok(assemble(parsed)?)
}

/// Batches waiting for the parser before the framing thread parses one
/// itself.
const BATCHES_IN_FLIGHT: usize = 2;

/// The packages of a batch, and whether each had a `desc`.
#[derive(Debug, Default)]
struct Parsed {
    entries: Vec<SyncEntry>,
    has_desc: Vec<bool>,
}

fn parse_batch(batch: &framing::Batch) -> Result<Parsed, SyncDbError> {
    // At most one package per file: no reallocation, which would copy the
    // entries (some 500 bytes each) and touch fresh memory.
    let mut parsed = Parsed {
        entries: Vec::with_capacity(batch.len()),
        has_desc: Vec::with_capacity(batch.len()),
    };
    for file in batch.files() {
        // A package's files are adjacent in every real database; a stray
        // later file makes a second entry, reported as a duplicate. The
        // framing never splits a package between batches.
        let same = parsed
            .entries
            .last()
            .is_some_and(|e| e.name == file.name && e.version.as_str() == file.version);
        if !same {
            parsed.entries.push(SyncEntry::new(file.name, file.version));
            parsed.has_desc.push(false);
        }
        if let (Some(entry), Some(seen)) = (parsed.entries.last_mut(), parsed.has_desc.last_mut()) {
            *seen |= file.is_desc;
            fill(entry, file.text, file.is_desc, file.path)?;
        }
    }
    Ok(parsed)
}

/// The entries sorted by name (stable), after the checks that need them
/// in archive order. repo-add writes them in order, but its shell glob
/// follows the locale's collation, not byte order.
fn assemble(parsed: Parsed) -> Result<Vec<SyncEntry>, SyncDbError> {
    let Parsed {
        mut entries,
        has_desc,
    } = parsed;
    if let Some(i) = has_desc.iter().position(|&seen| !seen) {
        let dir = format!("{}-{}", entries[i].name, entries[i].version);
        return Err(SyncDbError::MissingDesc { dir });
    }
    if !entries.is_sorted_by(|a, b| a.name <= b.name) {
        sort_by_name(&mut entries);
    }
    if let Some(pair) = entries.windows(2).find(|p| p[0].name == p[1].name) {
        let name = pair[0].name.clone();
        return Err(SyncDbError::Duplicate { name });
    }
    Ok(entries)
}

/// Sorts in place moving each entry about once: sorting the entries
/// themselves (some 500 bytes each) would move each of them about log2(n)
/// times, an eighth of the time to read 15,000 of them.
fn sort_by_name(entries: &mut [SyncEntry]) {
    // The first 16 bytes, zero-padded, order the names as their bytes do
    // (names hold no NUL) and settle most comparisons without a memcmp.
    let prefix = |name: &str| {
        let mut bytes = [0; 16];
        let len = name.len().min(16);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        u128::from_be_bytes(bytes)
    };
    let mut order: Vec<(u128, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (prefix(&e.name), i))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| entries[a.1].name.cmp(&entries[b.1].name))
            .then(a.1.cmp(&b.1))
    });
    // Position k takes the entry at order[k]: follow each cycle of the
    // permutation, marking the positions done.
    let mut source: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..source.len() {
        let mut k = start;
        while source[k] != usize::MAX {
            let from = std::mem::replace(&mut source[k], usize::MAX);
            if from == start {
                break;
            }
            entries.swap(k, from);
            k = from;
        }
    }
}

impl SyncEntry {
    fn new(name: &str, version: &str) -> Self {
        SyncEntry {
            filename: String::new(),
            name: name.to_owned(),
            base: None,
            version: Version::new(version),
            desc: None,
            csize: 0,
            isize: 0,
            md5: None,
            sha256: None,
            has_pgpsig: false,
            url: None,
            licenses: Vec::new(),
            arch: None,
            build_date: 0,
            packager: None,
            groups: Vec::new(),
            depends: Vec::new(),
            optdepends: Vec::new(),
            makedepends: Vec::new(),
            checkdepends: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            replaces: Vec::new(),
            files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Filename,
    Name,
    Base,
    Version,
    Desc,
    Groups,
    CSize,
    ISize,
    Md5,
    Sha256,
    PgpSig,
    Url,
    License,
    Arch,
    BuildDate,
    Packager,
    Replaces,
    Conflicts,
    Provides,
    Depends,
    OptDepends,
    MakeDepends,
    CheckDepends,
    Files,
}

/// In the order repo-add writes them (see [`KnownFields`]).
static KEYS: [(&str, Key); 24] = [
    ("FILENAME", Key::Filename),
    ("NAME", Key::Name),
    ("BASE", Key::Base),
    ("VERSION", Key::Version),
    ("DESC", Key::Desc),
    ("GROUPS", Key::Groups),
    ("CSIZE", Key::CSize),
    ("ISIZE", Key::ISize),
    ("MD5SUM", Key::Md5),
    ("SHA256SUM", Key::Sha256),
    ("PGPSIG", Key::PgpSig),
    ("URL", Key::Url),
    ("LICENSE", Key::License),
    ("ARCH", Key::Arch),
    ("BUILDDATE", Key::BuildDate),
    ("PACKAGER", Key::Packager),
    ("REPLACES", Key::Replaces),
    ("CONFLICTS", Key::Conflicts),
    ("PROVIDES", Key::Provides),
    ("DEPENDS", Key::Depends),
    ("OPTDEPENDS", Key::OptDepends),
    ("MAKEDEPENDS", Key::MakeDepends),
    ("CHECKDEPENDS", Key::CheckDepends),
    ("FILES", Key::Files),
];

/// Stores the fields of one `desc`, `depends` or `files` text in `entry`.
/// pacman reads every key from any of the three files, and so does this.
fn fill(entry: &mut SyncEntry, text: &[u8], is_desc: bool, path: &str) -> Result<(), SyncDbError> {
    let desc_error = |error| SyncDbError::Desc {
        path: path.to_owned(),
        error,
    };
    let mut known = KnownFields::new(&KEYS);
    for field in DescReader::new(text).map_err(desc_error)? {
        let field = field.map_err(desc_error)?;
        let Some((key, which)) = known.lookup(&field).map_err(desc_error)? else {
            continue;
        };
        let text = || field.single(key).map(|v| Some(v.to_owned()));
        let mismatch = |found: &str, expected: &str| SyncDbError::Mismatch {
            path: path.to_owned(),
            key,
            found: found.to_owned(),
            expected: expected.to_owned(),
        };
        match which {
            Key::Name => {
                let name = field.required(key).map_err(desc_error)?;
                if name != entry.name {
                    return Err(mismatch(name, &entry.name));
                }
            }
            Key::Version => {
                let version = field.required(key).map_err(desc_error)?;
                if version != entry.version.as_str() {
                    return Err(mismatch(version, entry.version.as_str()));
                }
            }
            Key::Filename => {
                // pacman downloads to CacheDir/FILENAME: keep it one plain name.
                let name = field.required(key).map_err(desc_error)?;
                if name.contains('/') || name == "." || name == ".." {
                    return Err(desc_error(field.invalid(key, name, "a plain file name")));
                }
                entry.filename = name.to_owned();
            }
            Key::Base => entry.base = text().map_err(desc_error)?,
            Key::Desc => entry.desc = text().map_err(desc_error)?,
            Key::Md5 => entry.md5 = text().map_err(desc_error)?,
            Key::Sha256 => entry.sha256 = text().map_err(desc_error)?,
            Key::PgpSig => entry.has_pgpsig = true,
            Key::Url => entry.url = text().map_err(desc_error)?,
            Key::Arch => entry.arch = text().map_err(desc_error)?,
            Key::Packager => entry.packager = text().map_err(desc_error)?,
            Key::CSize => entry.csize = field.number(key).map_err(desc_error)?,
            Key::ISize => entry.isize = field.number(key).map_err(desc_error)?,
            Key::BuildDate => entry.build_date = field.number(key).map_err(desc_error)?,
            Key::Groups => entry.groups = field.to_list(),
            Key::License => entry.licenses = field.to_list(),
            Key::Replaces => entry.replaces = field.to_list(),
            Key::Conflicts => entry.conflicts = field.to_list(),
            Key::Provides => entry.provides = field.to_list(),
            Key::Depends => entry.depends = field.to_list(),
            Key::OptDepends => entry.optdepends = field.to_list(),
            Key::MakeDepends => entry.makedepends = field.to_list(),
            Key::CheckDepends => entry.checkdepends = field.to_list(),
            Key::Files => entry.files = field.to_list(),
        }
    }
    if is_desc {
        known.require("NAME").map_err(desc_error)?;
        known.require("VERSION").map_err(desc_error)?;
    }
    Ok(())
}

mod decompress;
mod framing;
#[cfg(test)]
mod tests;
mod ustar;
