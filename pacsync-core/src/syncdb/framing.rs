//! Cutting the tar into batches of whole packages' files, on a thread of its
//! own, so that parsing them can run beside it: on the consumer's thread and
//! on this one.

use std::sync::mpsc::{SyncSender, TrySendError};

use super::decompress::TarStream;
use super::ustar;
use super::{Parsed, SyncDbError, SyncDbLimits, TarError, parse_batch};
use crate::localdb::split_entry_name;

/// A batch is handed on at the first package boundary past this many bytes
/// of file contents (some 60 packages of a typical database).
const BATCH_BYTES: usize = 64 * 1024;

/// The `desc`, `depends` and `files` files of consecutive packages, in
/// archive order. A package's files never span two batches.
#[derive(Debug)]
pub(super) struct Batch {
    /// The contents of the files, one after another.
    text: Vec<u8>,
    /// The paths of the files, one after another.
    paths: String,
    files: Vec<RawFile>,
}

#[derive(Debug)]
struct RawFile {
    /// Where its path and its contents end in [`Batch::paths`] and
    /// [`Batch::text`]; they start where the previous file's end.
    path_end: usize,
    text_end: usize,
    /// Lengths of `NAME` and of `NAME-PKGVER-PKGREL` at the start of the path.
    name_len: usize,
    dir_len: usize,
    is_desc: bool,
}

/// One file of a [`Batch`].
#[derive(Debug)]
pub(super) struct File<'a> {
    /// The path inside the tar (`acl-2.2.53-1/desc`).
    pub path: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub text: &'a [u8],
    pub is_desc: bool,
}

impl Batch {
    /// Room for a full batch of typical files, so that it rarely grows.
    fn new() -> Self {
        Batch {
            text: Vec::with_capacity(BATCH_BYTES + 8 * 1024),
            paths: String::with_capacity(4 * 1024),
            files: Vec::with_capacity(128),
        }
    }

    /// The number of files.
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    pub(super) fn files(&self) -> impl Iterator<Item = File<'_>> {
        let (mut path_start, mut text_start) = (0, 0);
        self.files.iter().map(move |f| {
            let path = &self.paths[path_start..f.path_end];
            let text = &self.text[text_start..f.text_end];
            (path_start, text_start) = (f.path_end, f.text_end);
            File {
                path,
                name: &path[..f.name_len],
                version: &path[f.name_len + 1..f.dir_len],
                text,
                is_desc: f.is_desc,
            }
        })
    }

    /// The `NAME-PKGVER-PKGREL` directory of the last file.
    fn last_dir(&self) -> Option<&str> {
        let last = self.files.last()?;
        let start = self
            .files
            .len()
            .checked_sub(2)
            .map_or(0, |i| self.files[i].path_end);
        Some(&self.paths[start..start + last.dir_len])
    }
}

/// What travels from the framing thread to the consumer.
#[derive(Debug)]
pub(super) enum Work {
    /// Files still to be parsed.
    Raw(Batch),
    /// A batch the framing thread parsed itself.
    Parsed(Result<Parsed, SyncDbError>),
}

impl Work {
    pub(super) fn parse(self) -> Result<Parsed, SyncDbError> {
        match self {
            Work::Raw(batch) => parse_batch(&batch),
            Work::Parsed(parsed) => parsed,
        }
    }
}

/// Whether the framing goes on after handing a batch over.
enum Next {
    Continue,
    /// The consumer has stopped (it met an error), or this batch holds one.
    Stop,
}

/// Walks the tar, sending its package files to `sender` in batches, in
/// archive order. An error comes after every file read before it, so the
/// consumer sees the first error in archive order.
pub(super) fn frame(
    reader: &mut (dyn TarStream + Send),
    limits: &SyncDbLimits,
    sender: &SyncSender<Work>,
) -> Result<(), TarError> {
    let mut batch = Batch::new();
    let mut handoff = Handoff { sender, sent: 0 };
    let result = walk(reader, limits, &mut batch, &mut handoff);
    if !batch.files.is_empty() {
        // Whatever happens to the last batch, the walk's error comes after it.
        handoff.send(batch);
    }
    result
}

fn walk(
    reader: &mut (dyn TarStream + Send),
    limits: &SyncDbLimits,
    batch: &mut Batch,
    handoff: &mut Handoff<'_>,
) -> Result<(), TarError> {
    let mut archive = ustar::Reader::new(reader);
    // Reused for every entry: the path of the entry being read (or last read).
    let mut path = String::new();
    let io_error = |path: &str, error| TarError::Io {
        after: (!path.is_empty()).then(|| path.to_owned()),
        error,
    };
    while let Some(entry) = archive.next_entry().map_err(|e| io_error(&path, e))? {
        path.clear();
        match std::str::from_utf8(archive.path()) {
            Ok(text) => path.push_str(text),
            Err(_) => path.push_str(&String::from_utf8_lossy(archive.path())),
        }
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(SyncDbError::UnsafePath { path }.into());
        }
        if entry.is_dir() || entry.is_pax_global() {
            continue;
        }
        let (dir, file) = match path.split_once('/') {
            Some((dir, file)) if entry.is_file() && !file.contains('/') => (dir, file),
            _ => return Err(SyncDbError::UnexpectedEntry { path }.into()),
        };
        let max = match file {
            "desc" | "depends" => limits.max_desc,
            "files" => limits.max_files,
            // pacman skips files it does not know, so later formats can add some.
            _ => continue,
        };
        let Some((name, _)) = split_entry_name(dir) else {
            return Err(SyncDbError::UnexpectedEntry { path }.into());
        };
        if entry.size > max {
            let len = entry.size;
            return Err(SyncDbError::EntryTooLarge { path, len, max }.into());
        }
        let (name_len, dir_len, is_desc) = (name.len(), dir.len(), file == "desc");
        // Only between packages, so that a package stays in one batch.
        if batch.text.len() >= BATCH_BYTES && batch.last_dir() != Some(dir) {
            let full = std::mem::replace(batch, Batch::new());
            if let Next::Stop = handoff.send(full) {
                return Ok(());
            }
        }
        archive
            .read_to(entry, &mut batch.text)
            .map_err(|e| io_error(&path, e))?;
        batch.paths.push_str(&path);
        batch.files.push(RawFile {
            path_end: batch.paths.len(),
            text_end: batch.text.len(),
            name_len,
            dir_len,
            is_desc,
        });
    }
    Ok(())
}

/// Hands batches to the consumer, parsing some of them here first.
struct Handoff<'a> {
    sender: &'a SyncSender<Work>,
    sent: usize,
}

impl Handoff<'_> {
    /// Parses every other batch here and leaves the rest to the consumer,
    /// unless it has more waiting than it can take: then this thread
    /// parses that one too. Framing costs about half as much as parsing,
    /// so this keeps the two threads about equally busy.
    fn send(&mut self, batch: Batch) -> Next {
        self.sent += 1;
        let work = if self.sent.is_multiple_of(2) {
            Work::Parsed(parse_batch(&batch))
        } else {
            match self.sender.try_send(Work::Raw(batch)) {
                Ok(()) => return Next::Continue,
                Err(TrySendError::Disconnected(_)) => return Next::Stop,
                Err(TrySendError::Full(work)) => Work::Parsed(work.parse()),
            }
        };
        let failed = matches!(work, Work::Parsed(Err(_)));
        match self.sender.send(work) {
            Ok(()) if !failed => Next::Continue,
            _ => Next::Stop,
        }
    }
}
