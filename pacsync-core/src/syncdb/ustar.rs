//! The tar formats of sync databases, read in place from the decompressed
//! stream: headers are parsed where they lie, padding is skipped without a
//! copy, and file contents are copied once, into the caller's buffer.
//!
//! It reads what the `tar` crate reads, the way it reads it (the tests build
//! their archives with that crate): v7, ustar and GNU headers, GNU long
//! names (`L`) and long links (`K`), pax local headers (`x`) with their
//! `path` and `size` records; an all-zero block or the end of the stream
//! ends the archive. Unlike the crate it caps the extension headers, which
//! it keeps in memory.

use std::io;

use super::decompress::TarStream;

const BLOCK: usize = 512;

/// Longest GNU long name or pax header kept: real ones are a path.
const MAX_EXTENSION: u64 = 64 * 1024;

/// One member of the archive; its path is [`Reader::path`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    kind: u8,
    pub size: u64,
}

impl Entry {
    pub fn is_file(self) -> bool {
        matches!(self.kind, b'0' | 0)
    }

    pub fn is_dir(self) -> bool {
        self.kind == b'5'
    }

    pub fn is_pax_global(self) -> bool {
        self.kind == b'g'
    }
}

/// The members of a tar, one after the other.
pub(super) struct Reader<'r> {
    inner: &'r mut (dyn TarStream + Send),
    /// The path of the last member returned.
    path: Vec<u8>,
    /// Bytes of the last member (contents and padding) not yet consumed.
    pending: u64,
    /// Padding after the contents of the last member.
    padding: u64,
    long_name: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl<'r> Reader<'r> {
    pub fn new(inner: &'r mut (dyn TarStream + Send)) -> Self {
        Reader {
            inner,
            path: Vec::new(),
            pending: 0,
            padding: 0,
            long_name: None,
            pax: None,
        }
    }

    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The next member, after skipping what is left of the last one;
    /// `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let mut long_link = false;
        // Whether extension members came before the end of the archive.
        let mut extended = false;
        loop {
            skip(self.inner, self.pending)?;
            self.pending = 0;
            let Some(header) =
                read_block(self.inner, |block| Header::parse(block, &mut self.path))?
            else {
                return end(extended);
            };
            let Some(header) = header? else {
                return end(extended);
            };
            extended |= header.recognized && matches!(header.kind, b'L' | b'K' | b'x');
            let extension = matches!(header.kind, b'L' | b'K' | b'x' | b'g');
            let size = match &self.pax {
                Some(pax) if !extension => pax_size(pax).unwrap_or(header.size),
                _ => header.size,
            };
            let padded = size
                .checked_next_multiple_of(BLOCK as u64)
                .ok_or_else(|| other("size overflow"))?;
            match header.kind {
                b'L' if header.recognized => {
                    if self.long_name.is_some() {
                        return Err(other("two long name entries describing the same member"));
                    }
                    self.long_name = Some(self.read_extension(size, padded)?);
                }
                b'K' if header.recognized => {
                    if long_link {
                        return Err(other("two long name entries describing the same member"));
                    }
                    long_link = true;
                    skip(self.inner, padded)?;
                }
                b'x' if header.recognized => {
                    if self.pax.is_some() {
                        return Err(other(
                            "two pax extensions entries describing the same member",
                        ));
                    }
                    self.pax = Some(self.read_extension(size, padded)?);
                }
                kind => {
                    if let Some(mut name) = self.long_name.take() {
                        if name.last() == Some(&0) {
                            name.pop();
                        }
                        self.path = name;
                    } else if let Some(path) = self.pax.as_deref().and_then(pax_path) {
                        self.path.clear();
                        self.path.extend_from_slice(path);
                    }
                    self.pax = None;
                    (self.pending, self.padding) = (padded, padded - size);
                    return Ok(Some(Entry { kind, size }));
                }
            }
        }
    }

    /// Appends the contents of the last member to `out`.
    pub fn read_to(&mut self, entry: Entry, out: &mut Vec<u8>) -> io::Result<()> {
        copy(self.inner, entry.size, out)?;
        self.pending = self.padding;
        Ok(())
    }

    fn read_extension(&mut self, size: u64, padded: u64) -> io::Result<Vec<u8>> {
        if size > MAX_EXTENSION {
            return Err(other("extension header too large"));
        }
        let mut data = Vec::with_capacity(size as usize);
        copy(self.inner, size, &mut data)?;
        skip(self.inner, padded - size)?;
        Ok(data)
    }
}

/// The end of the archive, an error if extension members describe a member
/// that never comes.
fn end(extended: bool) -> io::Result<Option<Entry>> {
    if extended {
        return Err(other(
            "members found describing a future member but no future member found",
        ));
    }
    Ok(None)
}

struct Header {
    kind: u8,
    size: u64,
    /// A ustar or GNU header: only these have extension members.
    recognized: bool,
}

impl Header {
    /// The header in `block`, its path written to `path`; `None` for the
    /// all-zero block that ends an archive.
    fn parse(block: &[u8; BLOCK], path: &mut Vec<u8>) -> io::Result<Option<Header>> {
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let field = |range: std::ops::Range<usize>| &block[range];
        let sum = |bytes: &[u8]| bytes.iter().map(|&b| u32::from(b)).sum::<u32>();
        // The checksum field itself counts as eight spaces.
        let computed = sum(block) - sum(field(148..156)) + 8 * u32::from(b' ');
        if octal(field(148..156))? as u32 != computed {
            return Err(other("archive header checksum mismatch"));
        }
        let size = match field(124..136) {
            // Base-256, for sizes beyond the 11 octal digits.
            [first, ..] if first & 0x80 != 0 => field(128..136)
                .iter()
                .fold(0, |n, &b| (n << 8) | u64::from(b)),
            octal_size => octal(octal_size)?,
        };
        let ustar = field(257..263) == b"ustar\0" && field(263..265) == b"00";
        let gnu = field(257..263) == b"ustar " && field(263..265) == b" \0";
        path.clear();
        let prefix = until_nul(field(345..500));
        if ustar && !prefix.is_empty() {
            path.extend_from_slice(prefix);
            path.push(b'/');
        }
        path.extend_from_slice(until_nul(field(0..100)));
        Ok(Some(Header {
            kind: block[156],
            size,
            recognized: ustar || gnu,
        }))
    }
}

/// Calls `parse` on the next block, in place when the stream holds it
/// whole; `None` at the end of the stream.
fn read_block<T>(
    inner: &mut (dyn TarStream + Send),
    parse: impl FnOnce(&[u8; BLOCK]) -> T,
) -> io::Result<Option<T>> {
    let buf = inner.fill_buf()?;
    if let Some(block) = buf.first_chunk::<BLOCK>() {
        let value = parse(block);
        inner.consume(BLOCK);
        return Ok(Some(value));
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let mut block = [0; BLOCK];
    let mut filled = 0;
    while filled < BLOCK {
        let buf = inner.fill_buf()?;
        if buf.is_empty() {
            return Err(other("failed to read entire block"));
        }
        let n = buf.len().min(BLOCK - filled);
        block[filled..filled + n].copy_from_slice(&buf[..n]);
        inner.consume(n);
        filled += n;
    }
    Ok(Some(parse(&block)))
}

fn copy(inner: &mut (dyn TarStream + Send), mut len: u64, out: &mut Vec<u8>) -> io::Result<()> {
    while len > 0 {
        let buf = inner.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        }
        let n = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        out.extend_from_slice(&buf[..n]);
        inner.consume(n);
        len -= n as u64;
    }
    Ok(())
}

fn skip(inner: &mut (dyn TarStream + Send), mut len: u64) -> io::Result<()> {
    while len > 0 {
        let available = inner.fill_buf()?.len();
        if available == 0 {
            return Err(other("unexpected EOF during skip"));
        }
        let n = available.min(usize::try_from(len).unwrap_or(usize::MAX));
        inner.consume(n);
        len -= n as u64;
    }
    Ok(())
}

fn until_nul(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |end| &field[..end])
}

fn octal(field: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(until_nul(field))
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim(), 8).ok())
        .ok_or_else(|| other("numeric field was not a number"))
}

/// The records of a pax header, `LEN KEY=VALUE\n` each, up to an empty
/// line; `None` for a malformed one.
fn pax_records(pax: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    pax.split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let space = line.iter().position(|&b| b == b' ')?;
            let len: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
            let record = &line[space + 1..];
            let equals = record.iter().position(|&b| b == b'=')?;
            (line.len() + 1 == len).then(|| (&record[..equals], &record[equals + 1..]))
        })
}

/// The first well-formed `path` record.
fn pax_path(pax: &[u8]) -> Option<&[u8]> {
    pax_records(pax)
        .flatten()
        .find_map(|(key, value)| (key == b"path").then_some(value))
}

/// The first `size` record, unless a malformed record comes before it.
fn pax_size(pax: &[u8]) -> Option<u64> {
    let (_, value) = pax_records(pax)
        .map_while(|record| record)
        .find(|(key, _)| *key == b"size")?;
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn other(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
