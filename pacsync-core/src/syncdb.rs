//! Sync databases (`core.db`, `extra.files`, ...): a compressed tar of
//! `NAME-PKGVER-PKGREL/desc` (and `depends`, `files`) entries.
//!
//! The tar is read while it is decompressed, straight from the input bytes,
//! and each entry's text is parsed from one reused buffer; the only
//! allocations left are the strings a [`SyncEntry`] owns.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::desc::{DescError, DescReader, KnownFields, MAX_DESC_LEN};
use crate::localdb::split_entry_name;
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

fn read_tar(reader: &mut dyn TarStream, limits: &SyncDbLimits) -> Result<Vec<SyncEntry>, TarError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries: Vec<SyncEntry> = Vec::new();
    let mut has_desc: Vec<bool> = Vec::new();
    // Reused for every entry: the path of the entry being read (or last read).
    let mut path = String::new();
    let mut text = Vec::new();
    let io_error = |path: &str, error| TarError::Io {
        after: (!path.is_empty()).then(|| path.to_owned()),
        error,
    };
    for entry in archive.entries_with_seek().map_err(|e| io_error("", e))? {
        let mut entry = entry.map_err(|e| io_error(&path, e))?;
        path.clear();
        path.push_str(&String::from_utf8_lossy(&entry.path_bytes()));
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(SyncDbError::UnsafePath { path }.into());
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let (dir, file) = match path.split_once('/') {
            Some((dir, file)) if kind.is_file() && !file.contains('/') => (dir, file),
            _ => return Err(SyncDbError::UnexpectedEntry { path }.into()),
        };
        let max = match file {
            "desc" | "depends" => limits.max_desc,
            "files" => limits.max_files,
            // pacman skips files it does not know, so later formats can add some.
            _ => continue,
        };
        let Some((name, version)) = split_entry_name(dir) else {
            return Err(SyncDbError::UnexpectedEntry { path }.into());
        };
        // A package's files are adjacent in every real database; a stray
        // later file makes a second entry, reported as a duplicate below.
        let same = entries
            .last()
            .is_some_and(|e: &SyncEntry| e.name == name && e.version.as_str() == version);
        if !same {
            entries.push(SyncEntry::new(name, version));
            has_desc.push(false);
        }
        if entry.size() > max {
            let len = entry.size();
            return Err(SyncDbError::EntryTooLarge { path, len, max }.into());
        }
        // Within `max`, so the size fits in memory. Reading exactly that
        // much into a buffer that only grows skips `read_to_end`'s probing.
        let len = entry.size() as usize;
        if text.len() < len {
            text.resize(len, 0);
        }
        let text = &mut text[..len];
        entry.read_exact(text).map_err(|e| io_error(&path, e))?;
        let is_desc = file == "desc";
        if let (Some(entry), Some(seen)) = (entries.last_mut(), has_desc.last_mut()) {
            *seen |= is_desc;
            fill(entry, text, is_desc, &path)?;
        }
    }
    if let Some(i) = has_desc.iter().position(|&seen| !seen) {
        let dir = format!("{}-{}", entries[i].name, entries[i].version);
        return Err(SyncDbError::MissingDesc { dir }.into());
    }
    sort_by_name(&mut entries);
    if let Some(pair) = entries.windows(2).find(|p| p[0].name == p[1].name) {
        let name = pair[0].name.clone();
        return Err(SyncDbError::Duplicate { name }.into());
    }
    Ok(entries)
}

/// Sorts entries by name (stable), moving each entry once. repo-add writes
/// them in order, but its shell glob follows the locale's collation, not
/// byte order. Sorting the entries themselves (about 500 bytes each) would
/// move each of them some log2(n) times: for 15,000 entries that was an
/// eighth of the whole read.
fn sort_by_name(entries: &mut Vec<SyncEntry>) {
    if entries.is_sorted_by(|a, b| a.name <= b.name) {
        return;
    }
    // The first eight bytes, zero-padded, order the names as their bytes
    // do (names hold no NUL) and settle most comparisons without a memcmp.
    let prefix = |name: &str| {
        let mut bytes = [0; 8];
        let len = name.len().min(8);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        u64::from_be_bytes(bytes)
    };
    let mut order: Vec<(u64, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (prefix(&e.name), i))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| entries[a.1].name.cmp(&entries[b.1].name))
            .then(a.1.cmp(&b.1))
    });
    let mut unsorted = std::mem::take(entries);
    entries.extend(
        order
            .iter()
            .map(|&(_, i)| std::mem::replace(&mut unsorted[i], SyncEntry::new("", ""))),
    );
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
#[cfg(test)]
mod tests;
