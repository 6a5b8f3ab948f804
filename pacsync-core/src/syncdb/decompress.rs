//! Getting the tar out of a sync database: the compression is told by its
//! magic bytes, the decompressed size is capped, and decompression runs on
//! a thread of its own, overlapping the framing and parsing of the tar.
//! Decoders write straight into the chunks the reader gets, and the reader
//! hands them back to be filled again.

use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The decompressed tar, read in place where it lies (see [`super::ustar`]).
pub(super) trait TarStream: BufRead {}

impl<T: BufRead> TarStream for T {}

/// Feeds the tar inside `bytes` to `consume`, failing past `max` bytes.
pub(super) fn with_tar<T>(
    bytes: &[u8],
    max: u64,
    consume: impl FnOnce(&mut (dyn TarStream + Send)) -> Result<T, TarError>,
) -> Result<T, SyncDbError> {
    let format = Format::detect(bytes)?;
    let over_limit = AtomicBool::new(false);
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
    let corrupt = |after, error| match over_limit.load(Ordering::Relaxed) {
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
        Format::Gzip => out.fill_from(&mut flate2::bufread::MultiGzDecoder::new(bytes)),
        Format::Zstd => out.fill_from(&mut zstd::stream::read::Decoder::with_buffer(bytes)?),
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
    // Read chunks go back to be filled again: no fresh memory to zero and
    // fault in for every chunk.
    let (recycle, recycled) = sync_channel(CHUNKS_IN_FLIGHT + 2);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut writer = ChunkWriter {
                sender,
                recycled,
                chunk: Vec::new(),
                filled: 0,
                reader_gone: false,
            };
            let result = produce(&mut writer).and_then(|()| writer.send_chunk());
            result.err().filter(|_| !writer.reader_gone)
        });
        let mut reader = ChunkReader {
            receiver,
            recycle,
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
    recycled: Receiver<Vec<u8>>,
    /// `CHUNK` bytes once in use, the first `filled` of them written.
    chunk: Vec<u8>,
    filled: usize,
    reader_gone: bool,
}

impl ChunkWriter {
    /// Reads all of `decoder` straight into chunks.
    fn fill_from(&mut self, decoder: &mut impl Read) -> io::Result<()> {
        loop {
            let n = match decoder.read(self.space()) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(n)?;
        }
    }

    /// The unwritten rest of the current chunk, never empty.
    fn space(&mut self) -> &mut [u8] {
        if self.chunk.is_empty() {
            self.chunk = self.recycled.try_recv().unwrap_or_default();
            self.chunk.resize(CHUNK, 0);
        }
        &mut self.chunk[self.filled..]
    }

    fn advance(&mut self, n: usize) -> io::Result<()> {
        self.filled += n;
        if self.filled == CHUNK {
            self.send_chunk()?;
        }
        Ok(())
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let mut full = std::mem::take(&mut self.chunk);
        full.truncate(std::mem::take(&mut self.filled));
        self.sender.send(full).map_err(|_| {
            self.reader_gone = true;
            io::Error::from(io::ErrorKind::BrokenPipe)
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let space = self.space();
        let n = buf.len().min(space.len());
        space[..n].copy_from_slice(&buf[..n]);
        self.advance(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChunkReader {
    receiver: Receiver<Vec<u8>>,
    recycle: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    let read = std::mem::replace(&mut self.chunk, chunk);
                    self.pos = 0;
                    // The writer allocates a new one if this one is not taken.
                    let _ = self.recycle.try_send(read);
                }
                // The producer is done; its error, if any, is reported apart.
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// Fails reads past the decompressed-size cap.
struct CappedReader<'a, R> {
    inner: R,
    remaining: u64,
    over_limit: &'a AtomicBool,
}

impl<'a, R: BufRead> CappedReader<'a, R> {
    fn new(inner: R, remaining: u64, over_limit: &'a AtomicBool) -> Self {
        CappedReader {
            inner,
            remaining,
            over_limit,
        }
    }
}

impl<R: BufRead> Read for CappedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CappedReader<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let available = self.inner.fill_buf()?;
        match usize::try_from(self.remaining) {
            Ok(left) if left < available.len() => {
                if left == 0 {
                    self.over_limit.store(true, Ordering::Relaxed);
                    return Err(io::Error::other("decompressed size limit reached"));
                }
                Ok(&available[..left])
            }
            _ => Ok(available),
        }
    }

    fn consume(&mut self, n: usize) {
        self.remaining = self.remaining.saturating_sub(n as u64);
        self.inner.consume(n);
    }
}
