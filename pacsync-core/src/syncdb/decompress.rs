//! Getting the tar out of a sync database: the compression is told by its
//! magic bytes, the decompressed size is capped, and decompression runs on
//! a second thread, overlapping the parse (the two take about as long each,
//! so this nearly halves the time to read a large database).

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{SyncDbError, TarError};

/// Decompressed bytes travel between the threads in chunks of this size
/// (below glibc's mmap threshold, so chunks come from the heap).
const CHUNK: usize = 64 * 1024;
/// Chunks in flight: enough to keep both threads busy, little memory.
const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Gzip,
    Zstd,
    Xz,
    Tar,
}

impl Format {
    pub(super) fn detect(bytes: &[u8]) -> Result<Format, SyncDbError> {
        match bytes {
            [] => Err(SyncDbError::Empty),
            [0x1f, 0x8b, ..] => Ok(Format::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Format::Zstd),
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Ok(Format::Xz),
            [b'B', b'Z', b'h', ..] => Err(SyncDbError::UnsupportedCompression("bzip2")),
            // A ustar/GNU header, or the zero block of an empty archive.
            _ if bytes.len() >= 512
                && (bytes[257..262] == *b"ustar" || bytes[..512].iter().all(|&b| b == 0)) =>
            {
                Ok(Format::Tar)
            }
            _ => Err(SyncDbError::NotAnArchive),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Xz => "xz",
            Format::Tar => "tar",
        }
    }
}

/// The decompressed tar as the `tar` crate reads it. Seeking (forward only)
/// lets it skip padding without zeroing a 32 KiB buffer for every entry, as
/// its plain-`Read` path does.
pub(super) trait TarStream: Read + Seek {}

impl<T: Read + Seek> TarStream for T {}

/// Feeds the tar inside `bytes` to `consume`, failing past `max` bytes.
pub(super) fn with_tar<T>(
    bytes: &[u8],
    max: u64,
    consume: impl FnOnce(&mut dyn TarStream) -> Result<T, TarError>,
) -> Result<T, SyncDbError> {
    let format = Format::detect(bytes)?;
    let over_limit = Cell::new(false);
    let (result, decode_error) = match format {
        Format::Tar => (
            consume(&mut CappedReader::new(bytes, max, &over_limit)),
            None,
        ),
        _ => pipelined(
            |out| decode(format, bytes, out),
            |chunks| consume(&mut CappedReader::new(chunks, max, &over_limit)),
        ),
    };
    let corrupt = |after, error| match over_limit.get() {
        true => SyncDbError::TooLarge { max },
        false => SyncDbError::Corrupt {
            format: format.name(),
            after,
            error,
        },
    };
    // A decoding error is the cause of whatever the parser saw after it.
    if let Some(error) = decode_error {
        return Err(corrupt(None, error));
    }
    result.map_err(|e| match e {
        TarError::Db(e) => e,
        TarError::Io { after, error } => corrupt(after, error),
    })
}

fn decode(format: Format, mut bytes: &[u8], out: &mut ChunkWriter) -> io::Result<()> {
    match format {
        Format::Gzip => io::copy(&mut flate2::bufread::MultiGzDecoder::new(bytes), out).map(drop),
        Format::Zstd => {
            io::copy(&mut zstd::stream::read::Decoder::with_buffer(bytes)?, out).map(drop)
        }
        // lzma-rs decodes xz into a writer only, not as a reader.
        Format::Xz => lzma_rs::xz_decompress(&mut bytes, out).map_err(|e| match e {
            lzma_rs::error::Error::IoError(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }),
        Format::Tar => out.write_all(bytes),
    }
}

/// Runs `produce` on a second thread and `consume` on this one, connected
/// by a bounded channel. Returns what `consume` returned and the error of
/// `produce`, unless that error only says `consume` stopped reading.
fn pipelined<T>(
    produce: impl FnOnce(&mut ChunkWriter) -> io::Result<()> + Send,
    consume: impl FnOnce(&mut ChunkReader) -> T,
) -> (T, Option<io::Error>) {
    let (sender, receiver) = sync_channel(CHUNKS_IN_FLIGHT);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut writer = ChunkWriter {
                sender,
                chunk: Vec::with_capacity(CHUNK),
                reader_gone: false,
            };
            let result = produce(&mut writer).and_then(|()| writer.send_chunk());
            result.err().filter(|_| !writer.reader_gone)
        });
        let mut reader = ChunkReader {
            receiver,
            chunk: Vec::new(),
            pos: 0,
        };
        let value = consume(&mut reader);
        // Unblocks a producer waiting on a full channel.
        drop(reader);
        let error = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (value, error)
    })
}

struct ChunkWriter {
    sender: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    reader_gone: bool,
}

impl ChunkWriter {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.sender.send(full).map_err(|_| {
            self.reader_gone = true;
            io::Error::from(io::ErrorKind::BrokenPipe)
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChunkReader {
    receiver: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => (self.chunk, self.pos) = (chunk, 0),
                // The producer is done; its error, if any, is reported apart.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Fails reads past the decompressed-size cap.
struct CappedReader<'a, R> {
    inner: R,
    remaining: u64,
    /// Bytes read so far, the stream position.
    position: u64,
    over_limit: &'a Cell<bool>,
}

impl<'a, R: Read> CappedReader<'a, R> {
    fn new(inner: R, remaining: u64, over_limit: &'a Cell<bool>) -> Self {
        CappedReader {
            inner,
            remaining,
            position: 0,
            over_limit,
        }
    }
}

impl<R: Read> Seek for CappedReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(ahead) = pos else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let mut left =
            u64::try_from(ahead).map_err(|_| io::Error::from(io::ErrorKind::Unsupported))?;
        let mut scratch = [0; 512];
        while left > 0 {
            let want = scratch.len().min(left.try_into().unwrap_or(usize::MAX));
            match self.read(&mut scratch[..want])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => left -= n as u64,
            }
        }
        Ok(self.position)
    }
}

impl<R: Read> Read for CappedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(left) => {
                self.remaining = left;
                self.position += n as u64;
                Ok(n)
            }
            None => {
                self.over_limit.set(true);
                Err(io::Error::other("decompressed size limit reached"))
            }
        }
    }
}
