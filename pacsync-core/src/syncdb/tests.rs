//! The sync database reader on small archives built in memory.

use std::io::Write;

use super::*;

const ACL: &str = "%FILENAME%\nacl-2.2.53-1-x86_64.pkg.tar.xz\n\n%NAME%\nacl\n\n\
    %BASE%\nacl\n\n%VERSION%\n2.2.53-1\n\n%DESC%\nAccess control lists\n\n\
    %GROUPS%\nbase\n\n%CSIZE%\n135020\n\n%ISIZE%\n314368\n\n%MD5SUM%\naaae\n\n\
    %SHA256SUM%\n27f4\n\n%PGPSIG%\niQFCBAAB\n\n%URL%\nhttp://savannah.nongnu.org/\n\n\
    %LICENSE%\nLGPL\n\n%ARCH%\nx86_64\n\n%BUILDDATE%\n1529391128\n\n\
    %PACKAGER%\nChristian Hesse <arch@eworm.de>\n\n%REPLACES%\nxfsacl\n\n\
    %CONFLICTS%\nxfsacl\n\n%PROVIDES%\nxfsacl\n\n%DEPENDS%\nattr\n\n\
    %OPTDEPENDS%\nperl: scripts\n\n%MAKEDEPENDS%\ngettext\n\n%CHECKDEPENDS%\nbats\n\n";

fn desc(name: &str, version: &str) -> String {
    format!("%FILENAME%\n{name}.pkg\n\n%NAME%\n{name}\n\n%VERSION%\n{version}\n\n")
}

/// A tar with raw header paths: `tar::Builder` refuses `..` and absolute
/// paths, which is what these tests need to write.
/// Tar members: path and contents.
type Files<'a> = [(&'a str, &'a [u8])];

fn tar(files: &Files<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        let dir = path.ends_with('/');
        header.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("write to memory");
    encoder.finish().expect("write to memory")
}

fn error(files: &Files<'_>) -> SyncDbError {
    parse_sync_db(&gzip(&tar(files))).expect_err("a bad database")
}

#[test]
fn reads_every_field_in_every_compression() {
    let zlib = desc("zlib", "1:1.2.11-3");
    let plain = tar(&[
        ("zlib-1:1.2.11-3/", b""),
        ("zlib-1:1.2.11-3/desc", zlib.as_bytes()),
        ("acl-2.2.53-1/", b""),
        ("acl-2.2.53-1/desc", ACL.as_bytes()),
        ("acl-2.2.53-1/files", b"%FILES%\nusr/\nusr/bin/getfacl\n\n"),
        ("acl-2.2.53-1/mtree", b"ignored: pacman skips unknown files"),
    ]);
    let zstd = zstd::stream::encode_all(plain.as_slice(), 1).expect("compress");
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).expect("compress");
    let entries = parse_sync_db(&plain).expect("valid tar");
    for packed in [gzip(&plain), zstd, xz] {
        assert_eq!(parse_sync_db(&packed).expect("valid database"), entries);
    }
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["acl", "zlib"], "sorted by name");
    let acl = serde_json::to_value(&entries[0]).expect("serializable");
    let expected = serde_json::json!({
        "filename": "acl-2.2.53-1-x86_64.pkg.tar.xz", "name": "acl", "base": "acl",
        "version": "2.2.53-1", "desc": "Access control lists", "csize": 135020,
        "isize": 314368, "md5": "aaae", "sha256": "27f4", "has_pgpsig": true,
        "url": "http://savannah.nongnu.org/", "licenses": ["LGPL"], "arch": "x86_64",
        "build_date": 1529391128, "packager": "Christian Hesse <arch@eworm.de>",
        "groups": ["base"], "depends": ["attr"], "optdepends": ["perl: scripts"],
        "makedepends": ["gettext"], "checkdepends": ["bats"], "provides": ["xfsacl"],
        "conflicts": ["xfsacl"], "replaces": ["xfsacl"], "files": ["usr/", "usr/bin/getfacl"],
    });
    assert_eq!(acl, expected);
    assert!(!entries[1].has_pgpsig && entries[1].md5.is_none());
}

#[test]
fn old_format_depends_file_is_merged() {
    let foo = desc("foo", "1-1");
    let entries = parse_sync_db(&tar(&[
        ("foo-1-1/desc", foo.as_bytes()),
        ("foo-1-1/depends", b"%DEPENDS%\nbar\n\n"),
    ]))
    .expect("valid");
    assert_eq!(entries[0].depends, ["bar"]);
}

#[test]
fn not_an_archive() {
    let mut cut = gzip(&tar(&[("a-1-1/desc", desc("a", "1-1").as_bytes())]));
    cut.truncate(cut.len() / 2);
    let xz_garbage = [0xfd, b'7', b'z', b'X', b'Z', 0, 1];
    let cases: [(&[u8], &str); 6] = [
        (b"", "empty file, not a sync database"),
        (
            b"%NAME%\nfoo\n",
            "not a sync database: neither gzip, zstd, xz nor tar data",
        ),
        (
            b"BZh91AY&SY",
            "bzip2-compressed databases are not supported (use gzip, zstd or xz)",
        ),
        (
            &gzip(b"just text"),
            "corrupt gzip data: failed to read entire block",
        ),
        (&cut, "corrupt gzip data: "),
        (&xz_garbage, "corrupt xz data: "),
    ];
    for (bytes, message) in cases {
        let err = parse_sync_db(bytes)
            .expect_err("not a database")
            .to_string();
        assert!(err.starts_with(message), "{err:?} is not {message:?}");
    }
    assert_eq!(parse_sync_db(&gzip(&[0; 1024])).expect("empty archive"), []);
}

#[test]
fn bad_entries_are_named() {
    let (a, b, a2) = (desc("a", "1-1"), desc("a", "2-1"), desc("b", "1-1"));
    let bad_size = format!("{a}%CSIZE%\nlarge\n\n");
    let twice = format!("{a}%DESC%\nx\n\n%DESC%\ny\n\n");
    let escape = a.replace("a.pkg", "../a.pkg");
    let huge = format!("{a}%DESC%\n{}\n\n", "x".repeat(MAX_DESC_LEN));
    let cases: [(&Files<'_>, &str); 14] = [
        (
            &[("../etc/passwd", b"x")],
            r#"entry "../etc/passwd": absolute or `..` path"#,
        ),
        (
            &[("/etc/passwd", b"x")],
            r#"entry "/etc/passwd": absolute or `..` path"#,
        ),
        (
            &[("a-1-1/../../x", b"x")],
            r#"entry "a-1-1/../../x": absolute or `..` path"#,
        ),
        (
            &[("desc", b"x")],
            r#"entry "desc": not a NAME-PKGVER-PKGREL/FILE path"#,
        ),
        (
            &[("a-1-1/sub/desc", b"x")],
            r#"entry "a-1-1/sub/desc": not a NAME-PKGVER-PKGREL/FILE path"#,
        ),
        (
            &[("noversion/desc", b"x")],
            r#"entry "noversion/desc": not a NAME-PKGVER-PKGREL/FILE path"#,
        ),
        (
            &[("a-1-1/desc", bad_size.as_bytes())],
            r#"entry a-1-1/desc: line 11: %CSIZE% value "large" is not a decimal number"#,
        ),
        (
            &[("a-1-1/desc", twice.as_bytes())],
            "entry a-1-1/desc: line 13: %DESC% given a second time (first at line 10)",
        ),
        (
            &[("a-1-1/desc", b"%NAME%\na\n\n")],
            "entry a-1-1/desc: %VERSION% is missing",
        ),
        (
            &[("a-1-1/desc", b"%NAME%\na\n\n\xff\n\n")],
            "entry a-1-1/desc: line 4: not valid UTF-8 (binary data?)",
        ),
        (
            &[("a-1-1/desc", a2.as_bytes())],
            r#"entry a-1-1/desc: %NAME% is "b" but the directory name says "a""#,
        ),
        (
            &[("a-1-1/desc", escape.as_bytes())],
            r#"entry a-1-1/desc: line 2: %FILENAME% value "../a.pkg" is not a plain file name"#,
        ),
        (
            &[("a-1-1/depends", b"%DEPENDS%\nb\n\n")],
            "entry a-1-1/: no desc file",
        ),
        (
            &[("a-1-1/desc", a.as_bytes()), ("a-2-1/desc", b.as_bytes())],
            "package a appears twice",
        ),
    ];
    for (files, message) in cases {
        assert_eq!(error(files).to_string(), message);
    }
    let err = error(&[("a-1-1/desc", huge.as_bytes())]).to_string();
    assert_eq!(
        err,
        format!(
            "entry a-1-1/desc: {} bytes, the limit is {MAX_DESC_LEN}",
            huge.len()
        )
    );
}

#[test]
fn decompressed_size_is_capped() {
    let bomb = gzip(&tar(&[("a-1-1/desc", desc("a", "1-1").as_bytes())]));
    let limits = SyncDbLimits {
        max_decompressed: 1000,
        ..SyncDbLimits::default()
    };
    let err = parse_sync_db_with_limits(&bomb, &limits).expect_err("over the cap");
    assert_eq!(
        err.to_string(),
        "database decompresses to more than 1000 bytes"
    );
}

/// Enough packages for many batches (a batch ends past 64 KiB of text):
/// `n` packages, each a `desc` padded to about 1 KiB, in reverse name order.
fn many(n: usize) -> Vec<(String, String)> {
    (0..n)
        .rev()
        .map(|i| {
            let name = format!("pkg{i:04}");
            let desc = format!("{}%DESC%\n{}\n\n", desc(&name, "1-1"), "x".repeat(1000));
            (format!("{name}-1-1/desc"), desc)
        })
        .collect()
}

fn tar_of(files: &[(String, String)]) -> Vec<u8> {
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_bytes()))
        .collect();
    tar(&files)
}

#[test]
fn large_databases_are_read_whole_and_sorted() {
    let files = many(500);
    let entries = parse_sync_db(&gzip(&tar_of(&files))).expect("valid database");
    let names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    let expected: Vec<_> = (0..500).map(|i| format!("pkg{i:04}")).collect();
    assert_eq!(names, expected);
    assert!(
        entries
            .iter()
            .all(|e| e.desc.as_ref().is_some_and(|d| d.len() == 1000))
    );
}

#[test]
fn large_databases_report_the_first_error_in_archive_order() {
    let mut files = many(400);
    // A bad file late in the archive, then a bad path after it.
    files[300].1.push_str("%CSIZE%\nlarge\n\n");
    files.push(("../escape".into(), "x".into()));
    let err = error_of(&files);
    assert!(
        err.starts_with("entry pkg0099-1-1/desc: line 14: %CSIZE%"),
        "{err}"
    );
    files[300].1 = desc("pkg0099", "1-1");
    assert_eq!(
        error_of(&files),
        r#"entry "../escape": absolute or `..` path"#
    );
    files.pop();
    // A package without desc, and the same package twice, far apart.
    files[350] = ("pkg0049-1-1/depends".into(), "%DEPENDS%\na\n\n".into());
    files.push(("pkg0399-2-1/desc".into(), desc("pkg0399", "2-1")));
    assert_eq!(error_of(&files), "entry pkg0049-1-1/: no desc file");
    files[350] = ("pkg0049-1-1/desc".into(), desc("pkg0049", "1-1"));
    assert_eq!(error_of(&files), "package pkg0399 appears twice");
}

fn error_of(files: &[(String, String)]) -> String {
    parse_sync_db(&gzip(&tar_of(files)))
        .expect_err("a bad database")
        .to_string()
}

/// Archives as other tar writers make them: GNU long names, ustar path
/// prefixes, pax headers, a base-256 size.
#[test]
fn long_names_and_extension_headers() {
    let long = format!("{}-bindings", "x".repeat(100));
    let long_desc = desc(&long, "1-1");
    let short = desc("b", "1-1");
    let mut builder = tar::Builder::new(Vec::new());
    // GNU: the name goes into an `L` member before the header.
    let mut header = tar::Header::new_gnu();
    header.set_size(long_desc.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(
            &mut header,
            format!("{long}-1-1/desc"),
            long_desc.as_bytes(),
        )
        .expect("append");
    // ustar: a path over 100 bytes splits into prefix and name.
    let prefixed = format!("{}-2-1", "y".repeat(90));
    let prefixed_desc = desc(&prefixed[..90], "2-1");
    let mut header = tar::Header::new_ustar();
    header
        .set_path(format!("{prefixed}/desc"))
        .expect("path fits");
    header.set_size(prefixed_desc.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append(&header, prefixed_desc.as_bytes())
        .expect("append");
    // pax: `path` overrides the header's name.
    builder
        .append_pax_extensions([("path", b"b-1-1/desc".as_slice())])
        .expect("append");
    let mut header = tar::Header::new_ustar();
    header.set_path("ignored-1-1/desc").expect("path fits");
    header.set_size(short.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, short.as_bytes()).expect("append");
    let mut archive = builder.into_inner().expect("finish");
    let entries = parse_sync_db(&gzip(&archive)).expect("valid database");
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["b", &long, &prefixed[..90]]);

    // The same sizes in base-256 read the same.
    let mut offset = 0;
    while offset + 512 <= archive.len() && archive[offset] != 0 {
        let header = tar::Header::from_byte_slice(&archive[offset..offset + 512]);
        let size = header.entry_size().expect("size");
        let block = &mut archive[offset..offset + 512];
        block[124..136].fill(0);
        block[124] = 0x80;
        block[128..136].copy_from_slice(&size.to_be_bytes());
        let mut header = tar::Header::from_byte_slice(block).clone();
        header.set_cksum();
        archive[offset..offset + 512].copy_from_slice(header.as_bytes());
        offset += 512 + usize::try_from(size.next_multiple_of(512)).expect("small");
    }
    assert_eq!(
        parse_sync_db(&gzip(&archive)).expect("base-256 sizes"),
        entries
    );

    // A damaged header is an error, named after the entry before it.
    let mut damaged = tar(&[
        ("a-1-1/desc", desc("a", "1-1").as_bytes()),
        ("b-1-1/desc", short.as_bytes()),
    ]);
    damaged[1024] ^= 1;
    let err = parse_sync_db(&gzip(&damaged)).expect_err("bad checksum");
    assert_eq!(
        err.to_string(),
        "corrupt gzip data after entry a-1-1/desc: archive header checksum mismatch"
    );
    // An extension header describing nothing.
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("path", b"a-1-1/desc".as_slice())])
        .expect("append");
    let dangling = builder.into_inner().expect("finish");
    let err = parse_sync_db(&gzip(&dangling)).expect_err("no member");
    assert!(err.to_string().ends_with("no future member found"), "{err}");
}

#[test]
fn sorting_follows_every_cycle_of_the_permutation() {
    // A fixed pseudo-random order (an LCG), names sharing long prefixes.
    let mut state = 7u64;
    let mut names: Vec<String> = (0..2000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            format!("python-package-{:05}", state >> 50)
        })
        .collect();
    names.dedup();
    let mut entries: Vec<SyncEntry> = names.iter().map(|n| SyncEntry::new(n, "1-1")).collect();
    sort_by_name(&mut entries);
    let sorted: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
}
