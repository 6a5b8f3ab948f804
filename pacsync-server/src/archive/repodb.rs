//! The sync database of a snapshot repository (`$repo.db`): a gzip tar of
//! `NAME-VERSION/desc` entries, as `repo-add` writes it, built from each
//! file's `.PKGINFO`.

use std::io::Write as _;

use super::pkginfo::values;

/// One package of the repository.
#[derive(Debug, Clone)]
pub struct DbPackage<'a> {
    pub filename: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub pkginfo: &'a str,
}

/// `.PKGINFO` key → `desc` field, in the order `repo-add` writes them.
const SINGLE: [(&str, &str); 9] = [
    ("pkgname", "NAME"),
    ("pkgbase", "BASE"),
    ("pkgver", "VERSION"),
    ("pkgdesc", "DESC"),
    ("url", "URL"),
    ("arch", "ARCH"),
    ("builddate", "BUILDDATE"),
    ("packager", "PACKAGER"),
    ("size", "ISIZE"),
];

const LISTS: [(&str, &str); 10] = [
    ("group", "GROUPS"),
    ("license", "LICENSE"),
    ("replaces", "REPLACES"),
    ("depend", "DEPENDS"),
    ("conflict", "CONFLICTS"),
    ("provides", "PROVIDES"),
    ("optdepend", "OPTDEPENDS"),
    ("makedepend", "MAKEDEPENDS"),
    ("checkdepend", "CHECKDEPENDS"),
    ("backup", "-"),
];

/// The `desc` file of one package.
pub fn desc(p: &DbPackage<'_>) -> String {
    let mut out = String::new();
    let mut field = |name: &str, vals: &[&str]| {
        if vals.is_empty() || name == "-" {
            return;
        }
        out.push_str(&format!("%{name}%\n"));
        for v in vals {
            out.push_str(v);
            out.push('\n');
        }
        out.push('\n');
    };
    field("FILENAME", &[p.filename]);
    for (key, name) in SINGLE {
        let v: Vec<&str> = values(p.pkginfo, key).take(1).collect();
        field(name, &v);
        if name == "BASE" {
            // CSIZE and the checksum follow the base in repo-add's order.
            let size = p.size.to_string();
            field("CSIZE", &[&size]);
            field("SHA256SUM", &[p.sha256]);
        }
    }
    for (key, name) in LISTS {
        let v: Vec<&str> = values(p.pkginfo, key).collect();
        field(name, &v);
    }
    out
}

/// The whole database, gzip-compressed.
pub fn write(packages: &[DbPackage<'_>]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for p in packages {
        let name = values(p.pkginfo, "pkgname").next().unwrap_or_default();
        let version = values(p.pkginfo, "pkgver").next().unwrap_or_default();
        let dir = format!("{name}-{version}/");
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        tar.append_data(&mut h, &dir, std::io::empty())?;
        let text = desc(p);
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, format!("{dir}desc"), text.as_bytes())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_reader_reads_what_the_writer_writes() {
        let info = "pkgname = foo\npkgbase = foo\npkgver = 1.0-1\npkgdesc = a thing\n\
                    arch = any\nsize = 42\ndepend = bar\ndepend = baz>=2\nprovides = libfoo.so\n";
        let p = DbPackage {
            filename: "foo-1.0-1-any.pkg.tar.zst",
            sha256: "ab",
            size: 7,
            pkginfo: info,
        };
        let db = write(&[p]).expect("write");
        let entries = pacsync_core::syncdb::parse_sync_db(&db).expect("parse");
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.name, "foo");
        assert_eq!(e.version.as_str(), "1.0-1");
        assert_eq!(e.filename, "foo-1.0-1-any.pkg.tar.zst");
        assert_eq!(e.sha256.as_deref(), Some("ab"));
        assert_eq!((e.csize, e.isize), (7, 42));
        assert_eq!(e.depends, ["bar", "baz>=2"]);
        assert_eq!(e.provides, ["libfoo.so"]);
    }
}
