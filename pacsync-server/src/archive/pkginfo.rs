//! A package file's own `.PKGINFO`: what the archive checks an upload
//! against and what the snapshot repositories' databases are written from.

use std::io::{self, Read};

/// `.PKGINFO` comes first in a package (libalpm reads no further when it
/// only wants metadata), so this much of the uncompressed tar is enough.
const PKGINFO_WINDOW: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PkgInfoError {
    #[error("not a package file: {0}")]
    NotAPackage(String),
    #[error("reading the package: {0}")]
    Io(#[from] io::Error),
}

/// The parsed `.PKGINFO`: its text and the fields the archive needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgInfo {
    pub text: String,
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl PkgInfo {
    pub fn parse(text: &str) -> Result<PkgInfo, PkgInfoError> {
        let one = |key: &str| {
            values(text, key)
                .next()
                .map(str::to_owned)
                .ok_or_else(|| PkgInfoError::NotAPackage(format!(".PKGINFO has no {key}")))
        };
        Ok(PkgInfo {
            text: text.to_owned(),
            name: one("pkgname")?,
            version: one("pkgver")?,
            arch: one("arch")?,
        })
    }

    /// The file name makepkg gives this package with `ext`
    /// (`.pkg.tar.zst`).
    pub fn file_stem(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.arch)
    }
}

/// Every value of `key` (`key = value` lines), in order.
pub fn values<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().filter_map(move |line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Reads `.PKGINFO` from a package file (zstd, gzip, xz or plain tar).
pub fn read(file: &mut dyn Read) -> Result<PkgInfo, PkgInfoError> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        let n = file.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = &magic[..got];
    let rest = io::Cursor::new(head.to_vec()).chain(file);
    let tar = window(head, rest)?;
    let mut archive = tar::Archive::new(io::Cursor::new(tar));
    let entries = archive
        .entries()
        .map_err(|e| PkgInfoError::NotAPackage(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let Ok(mut entry) = entry else {
            break;
        };
        let is_pkginfo = entry
            .path()
            .is_ok_and(|p| p.as_os_str() == ".PKGINFO" || p.as_os_str() == "./.PKGINFO");
        if is_pkginfo {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| PkgInfoError::NotAPackage(format!(".PKGINFO unreadable: {e}")))?;
            return PkgInfo::parse(&text);
        }
    }
    Err(PkgInfoError::NotAPackage(
        "no .PKGINFO at the start of the archive".into(),
    ))
}

/// The first [`PKGINFO_WINDOW`] bytes of the uncompressed tar.
fn window(magic: &[u8], rest: impl Read) -> Result<Vec<u8>, PkgInfoError> {
    let mut out = Vec::new();
    match magic {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let decoder = zstd::stream::read::Decoder::new(rest)?;
            read_prefix(decoder, &mut out)?;
        }
        [0x1f, 0x8b, ..] => read_prefix(flate2::read::GzDecoder::new(rest), &mut out)?,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => {
            // lzma-rs writes to a sink; a sink that stops after the window
            // spares decompressing the whole package.
            let mut sink = PrefixSink(&mut out);
            let mut input = io::BufReader::new(rest);
            match lzma_rs::xz_decompress(&mut input, &mut sink) {
                Ok(()) => {}
                Err(_) if out.len() as u64 >= PKGINFO_WINDOW => {}
                Err(e) => return Err(PkgInfoError::NotAPackage(format!("bad xz data: {e}"))),
            }
        }
        _ => read_prefix(rest, &mut out)?,
    }
    Ok(out)
}

fn read_prefix(r: impl Read, out: &mut Vec<u8>) -> Result<(), PkgInfoError> {
    r.take(PKGINFO_WINDOW)
        .read_to_end(out)
        .map_err(|e| PkgInfoError::NotAPackage(format!("cannot decompress: {e}")))?;
    Ok(())
}

struct PrefixSink<'a>(&'a mut Vec<u8>);

impl io::Write for PrefixSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = usize::try_from(PKGINFO_WINDOW).unwrap_or(usize::MAX) - self.0.len();
        if room == 0 {
            return Err(io::Error::other("window full"));
        }
        let n = buf.len().min(room);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(compress: fn(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let info = "pkgname = foo\npkgver = 1:2.0-3\narch = x86_64\ndepend = bar>=1\n";
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(info.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, ".PKGINFO", info.as_bytes())
            .expect("append");
        compress(b.into_inner().expect("tar"))
    }

    #[test]
    fn reads_zstd_gzip_and_plain() {
        let zst = package(|t| zstd::encode_all(&t[..], 3).expect("zstd"));
        let gz = package(|t| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, &t).expect("gz");
            e.finish().expect("gz")
        });
        let plain = package(|t| t);
        for bytes in [zst, gz, plain] {
            let info = read(&mut &bytes[..]).expect("pkginfo");
            assert_eq!(
                (
                    info.name.as_str(),
                    info.version.as_str(),
                    info.arch.as_str()
                ),
                ("foo", "1:2.0-3", "x86_64")
            );
            assert_eq!(values(&info.text, "depend").collect::<Vec<_>>(), ["bar>=1"]);
        }
    }

    #[test]
    fn refuses_what_is_no_package() {
        assert!(read(&mut &b"hello, world"[..]).is_err());
        let no_info = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_cksum();
            b.append_data(&mut h, "usr/x", &b"x"[..]).expect("append");
            b.into_inner().expect("tar")
        };
        assert!(read(&mut &no_info[..]).is_err());
    }
}
