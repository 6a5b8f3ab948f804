//! A machine's state report as JSON: `{"hash": "<64 hex>", "packages":
//! [...]}`, the packages optional (a hash-only report) and `null` meaning
//! none. The server reads hundreds of these a second, each a few hundred
//! KiB, with two readers:
//!
//! - [`fast`] reads the report as machines write it (serde_json's output:
//!   no escapes, the fields pacsync writes, in any order) byte by byte,
//!   with no generic machinery between the bytes and the packages; it
//!   takes less than half serde's time (0.5–0.66 against 1.2–1.4 ms for
//!   1,500 packages, `benches/upload` in pacsync-server). Anything outside
//!   that shape — an escape, a field it does not know, a duplicate, a
//!   number it cannot take — makes it give up, and the report is read
//!   again by serde.
//! - The serde reader ([`ReportSeed`]) takes everything JSON allows and
//!   says what is wrong when the report is malformed. It reads the report
//!   in one pass, the package list allocated once.
//!
//! Both give the same result for every report [`fast`] reads: tested on
//! reports written every way serde_json writes them, and on many
//! thousands of damaged ones, where [`fast`] must either give up or agree.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::package::{InstallReason, Origin, Package};
use crate::state::PackageState;

/// What [`read_report`] gives: the hash as written, and the packages if
/// the report carried them.
pub type Report = (String, Option<PackageState>);

/// About the shortest a package is in JSON, with a dependency or two: the
/// package list is sized from the report's length up front instead of
/// growing (its reallocations were a tenth of an upload's time).
const BYTES_PER_PACKAGE: usize = 128;

fn capacity(json_len: usize) -> usize {
    (json_len / BYTES_PER_PACKAGE).min(1 << 16)
}

/// Reads a state report from JSON text, to its end: by [`fast`] if it can,
/// by serde otherwise (which gives the error if the report is malformed).
pub fn read_report(json: &str) -> Result<Report, serde_json::Error> {
    if let Some((hash, packages)) = fast::read(json) {
        return Ok((hash.to_owned(), packages.map(PackageState::from)));
    }
    read_report_serde(json)
}

/// Reads a state report by serde alone ([`ReportSeed`]).
pub fn read_report_serde(json: &str) -> Result<Report, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let report = ReportSeed { len: json.len() }.deserialize(&mut de)?;
    de.end()?;
    Ok(report)
}

/// A state report's two fields; anything else is refused.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ReportField {
    Hash,
    Packages,
}

/// Reads a state report in one pass; `len` is the JSON's length, to size
/// the package list.
struct ReportSeed {
    len: usize,
}

impl<'de> DeserializeSeed<'de> for ReportSeed {
    type Value = Report;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Report, D::Error> {
        d.deserialize_struct("StateReport", &["hash", "packages"], self)
    }
}

impl<'de> Visitor<'de> for ReportSeed {
    type Value = Report;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a state report")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Report, A::Error> {
        let (mut hash, mut packages) = (None, None);
        while let Some(field) = map.next_key()? {
            match field {
                ReportField::Hash if hash.is_some() => {
                    return Err(A::Error::duplicate_field("hash"));
                }
                ReportField::Hash => hash = Some(map.next_value::<String>()?),
                ReportField::Packages if packages.is_some() => {
                    return Err(A::Error::duplicate_field("packages"));
                }
                ReportField::Packages => {
                    packages = Some(map.next_value_seed(PackagesSeed {
                        capacity: capacity(self.len),
                    })?);
                }
            }
        }
        let hash = hash.ok_or_else(|| A::Error::missing_field("hash"))?;
        Ok((hash, packages.flatten()))
    }
}

/// A package list (or `null`) read straight into a state, its `Vec`
/// allocated once.
struct PackagesSeed {
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for PackagesSeed {
    type Value = Option<PackageState>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for PackagesSeed {
    type Value = Option<PackageState>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of packages")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut packages = Vec::with_capacity(self.capacity);
        while let Some(p) = seq.next_element::<Package>()? {
            packages.push(p);
        }
        Ok(Some(PackageState::from(packages)))
    }
}

pub mod fast {
    //! The state report as pacsync writes it, read without serde. Every
    //! function answers `None` as soon as the bytes leave the shape it
    //! knows; the caller then reads the report with serde, which accepts
    //! all JSON and explains errors. So this reader never has to be
    //! complete, only right about what it accepts.

    use super::{InstallReason, Origin, Package, capacity};

    /// The hash as written, and the packages (unsorted, as sent) if the
    /// report carried any; `None` if the report is not in the shape read
    /// here.
    pub fn read(json: &str) -> Option<(&str, Option<Vec<Package>>)> {
        let mut r = Reader {
            text: json,
            bytes: json.as_bytes(),
            at: 0,
        };
        let (mut hash, mut packages) = (None, None);
        r.object(|r, key| match key {
            "hash" => once(&mut hash, r.string()?),
            "packages" if r.null() => once(&mut packages, None),
            "packages" => once(&mut packages, Some(r.packages(capacity(json.len()))?)),
            _ => None,
        })?;
        r.skip_space();
        if r.at != r.bytes.len() {
            return None;
        }
        Some((hash?, packages.flatten()))
    }

    /// Sets a field met for the first time; `None` for a duplicate.
    fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
        match slot {
            Some(_) => None,
            empty => {
                *empty = Some(value);
                Some(())
            }
        }
    }

    /// Where the text of a string stops: at its closing quote, or at what
    /// is left to serde (a backslash, a control character). Eight bytes at
    /// a time, a byte at a time for the rest: most strings here are short,
    /// and a branch per byte was a fifth of the reader's time.
    pub(super) fn plain_len(bytes: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // `(x - n) & !x & HIGH` flags the bytes of `x` below `n` (n ≤ 0x80);
        // a borrow may flag bytes after the first, never one before it, so
        // the lowest flag is exact.
        let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
        let mut at = 0;
        while let Some(&chunk) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
            let x = u64::from_le_bytes(chunk);
            let stops = below(x ^ (ONES * u64::from(b'"')), 1)
                | below(x ^ (ONES * u64::from(b'\\')), 1)
                | below(x, 0x20);
            if stops != 0 {
                return Some(at + stops.trailing_zeros() as usize / 8);
            }
            at += 8;
        }
        let rest = bytes.get(at..)?;
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        Some(at + len)
    }

    struct Reader<'a> {
        text: &'a str,
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn skip_space(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
                self.at += 1;
            }
        }

        /// The next byte that is not JSON whitespace, not consumed.
        fn peek(&mut self) -> Option<u8> {
            self.skip_space();
            self.bytes.get(self.at).copied()
        }

        fn expect(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// Consumes `null` if it comes next.
        fn null(&mut self) -> bool {
            self.skip_space();
            let is_null = self.bytes[self.at..].starts_with(b"null");
            if is_null {
                self.at += 4;
            }
            is_null
        }

        /// A string without escapes or control characters, borrowed.
        fn string(&mut self) -> Option<&'a str> {
            self.expect(b'"')?;
            let start = self.at;
            let len = plain_len(&self.bytes[start..])?;
            if self.bytes[start + len] != b'"' {
                return None;
            }
            self.at = start + len + 1;
            // Both ends are at an ASCII quote, so at char boundaries.
            self.text.get(start..start + len)
        }

        /// A non-negative integer as JSON writes it (no leading zero),
        /// fitting in a `u64`.
        fn unsigned(&mut self) -> Option<u64> {
            self.skip_space();
            let digits = self.bytes[self.at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let number = &self.bytes[self.at..self.at + digits];
            if digits == 0 || (digits > 1 && number[0] == b'0') {
                return None;
            }
            let value = number.iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })?;
            self.at += digits;
            // A fraction or an exponent makes it a float, which a size is not.
            match self.bytes.get(self.at) {
                Some(b'.' | b'e' | b'E') => None,
                _ => Some(value),
            }
        }

        /// `{ "key": value, ... }`, `field` reading each value.
        fn object(
            &mut self,
            mut field: impl FnMut(&mut Self, &'a str) -> Option<()>,
        ) -> Option<()> {
            self.list(b'{', b'}', |r| {
                let key = r.string()?;
                r.expect(b':')?;
                field(r, key)
            })
        }

        /// `[ item, ... ]`, `item` reading each.
        fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
            self.list(b'[', b']', item)
        }

        /// `open`, items separated by commas (none after the last), `close`.
        fn list(
            &mut self,
            open: u8,
            close: u8,
            mut item: impl FnMut(&mut Self) -> Option<()>,
        ) -> Option<()> {
            self.expect(open)?;
            if self.peek()? == close {
                self.at += 1;
                return Some(());
            }
            loop {
                item(self)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b if b == close => {
                        self.at += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        fn packages(&mut self, capacity: usize) -> Option<Vec<Package>> {
            let mut packages = Vec::with_capacity(capacity);
            self.array(|r| {
                packages.push(r.package()?);
                Some(())
            })?;
            Some(packages)
        }

        fn package(&mut self) -> Option<Package> {
            let (mut name, mut version, mut arch, mut reason) = (None, None, None, None);
            let (mut origin, mut size, mut depends) = (None, None, None);
            self.object(|r, key| match key {
                "name" => once(&mut name, r.string()?),
                "version" => once(&mut version, r.string()?),
                "arch" => once(&mut arch, r.string()?),
                "reason" => once(&mut reason, r.reason()?),
                "origin" if r.null() => once(&mut origin, None),
                "origin" => once(&mut origin, Some(r.origin()?)),
                "installed_size" => once(&mut size, r.unsigned()?),
                "depends" => once(&mut depends, r.depends()?),
                _ => None,
            })?;
            Some(Package {
                name: name?.to_owned(),
                version: version?.into(),
                arch: arch?.to_owned(),
                reason: reason?,
                origin: origin.flatten(),
                installed_size: size.unwrap_or(0),
                depends: depends.unwrap_or_default(),
            })
        }

        fn reason(&mut self) -> Option<InstallReason> {
            match self.string()? {
                "explicit" => Some(InstallReason::Explicit),
                "dependency" => Some(InstallReason::Dependency),
                _ => None,
            }
        }

        /// `{"kind": "repo", "repo": NAME}` or `{"kind": "foreign"}`.
        fn origin(&mut self) -> Option<Origin> {
            let (mut kind, mut repo) = (None, None);
            self.object(|r, key| match key {
                "kind" => once(&mut kind, r.string()?),
                "repo" => once(&mut repo, r.string()?),
                _ => None,
            })?;
            match (kind?, repo) {
                ("repo", Some(repo)) => Some(Origin::Repo(repo.to_owned())),
                ("foreign", None) => Some(Origin::Foreign),
                _ => None,
            }
        }

        fn depends(&mut self) -> Option<Vec<String>> {
            let mut depends = Vec::new();
            self.array(|r| {
                depends.push(r.string()?.to_owned());
                Some(())
            })?;
            Some(depends)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_ends_at_the_first_quote_backslash_or_control_character() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        // Every byte at every place of the first two words and a tail,
        // after bytes that come close to a stop (0x20, 0x21, 0x5d, 0x7f,
        // 0x80, 0xff) and before another stop that a borrow might flag.
        for filler in [b'a', 0x20, 0x21, 0x5d, 0x7f, 0x80, 0xff] {
            for len in 0..20 {
                for at in 0..len {
                    for byte in 0..=255u8 {
                        let mut bytes = vec![filler; len];
                        bytes[at] = byte;
                        if at + 1 < len {
                            bytes[at + 1] = 0;
                        }
                        assert_eq!(fast::plain_len(&bytes), naive(&bytes), "{bytes:02x?}");
                    }
                }
            }
        }
    }

    const PACKAGES: &str = r#"[
        {"name": "zlib", "version": "1:1.3-1", "arch": "x86_64", "reason": "dependency"},
        {"name": "bash", "version": "5.2-1", "arch": "x86_64", "reason": "explicit",
         "origin": {"kind": "repo", "repo": "core"}, "installed_size": 9, "depends": ["readline"]}
    ]"#;

    fn state() -> PackageState {
        serde_json::from_str(PACKAGES).expect("the packages parse")
    }

    #[test]
    fn a_report_reads_in_one_pass_whatever_the_order_of_its_fields() {
        let hash = "ab".repeat(32);
        for json in [
            format!(r#"{{"hash": "{hash}", "packages": {PACKAGES}}}"#),
            format!(r#"{{"packages": {PACKAGES}, "hash": "{hash}"}}"#),
        ] {
            assert!(fast::read(&json).is_some(), "read fast: {json}");
            let (h, packages) = read_report(&json).expect("a report");
            assert_eq!(h, hash);
            assert_eq!(packages, Some(state()));
            assert_eq!(state().get("bash").map(|p| p.depends.len()), Some(1));
        }
        for json in [
            format!(r#"{{"hash":"{hash}"}}"#),
            format!(r#"{{"hash":"{hash}","packages":null}}"#),
        ] {
            assert!(fast::read(&json).is_some(), "read fast: {json}");
            assert_eq!(read_report(&json).expect("hash only"), (hash.clone(), None));
        }
    }

    #[test]
    fn a_malformed_report_is_refused_with_what_is_wrong() {
        let hash = "ab".repeat(32);
        let cases = [
            (
                format!(r#"{{"hash":"{hash}","extra":1}}"#),
                "unknown field `extra`",
            ),
            (
                format!(r#"{{"hash":"{hash}","hash":"{hash}"}}"#),
                "duplicate field `hash`",
            ),
            (
                r#"{"packages":[],"packages":[]}"#.to_owned(),
                "duplicate field `packages`",
            ),
            (r#"{"packages":[]}"#.to_owned(), "missing field `hash`"),
            (
                format!(r#"{{"hash":"{hash}","packages":{{}}}}"#),
                "a list of packages",
            ),
            (
                format!(r#"{{"hash":"{hash}","packages":[{{"name":1}}]}}"#),
                "invalid type",
            ),
            (
                format!(r#"{{"hash":"{hash}"}} trailing"#),
                "trailing characters",
            ),
            (r#"[1, 2]"#.to_owned(), "invalid type"),
        ];
        for (json, says) in cases {
            assert_eq!(fast::read(&json), None, "{json}");
            let e = read_report(&json).expect_err(&json).to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    /// Reports the fast reader leaves to serde, and what serde makes of
    /// them: each is accepted or refused as before.
    #[test]
    fn what_the_fast_reader_leaves_serde_still_reads() {
        let hash = "ab".repeat(32);
        let package = |fields: &str| {
            format!(
                r#"{{"hash":"{hash}","packages":[{{"name":"a","version":"1-1","arch":"any","reason":"explicit"{fields}}}]}}"#
            )
        };
        let accepted = [
            // An escape in a string.
            package(r#","depends":["a\u0062c"]"#),
            format!(
                r#"{{"hash":"{hash}","packages":[{{"name":"a\"b","version":"1","arch":"any","reason":"explicit"}}]}}"#
            ),
            // A field serde's derive ignores.
            package(r#","future":{"x":[1,2]}"#),
            // Origin with the repository first.
            package(r#","origin":{"repo":"core","kind":"repo"}"#),
        ];
        for json in &accepted {
            let read = read_report(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(read.1.map(|s| s.len()), Some(1), "{json}");
        }
        let refused = [
            package(r#","installed_size":-1"#),
            package(r#","installed_size":1.5"#),
            package(r#","installed_size":01"#),
            package(r#","installed_size":18446744073709551616"#),
            package(r#","reason":"explicit""#),
            package(r#","origin":{"kind":"repo"}"#),
            package(r#","depends":null"#),
            package(r#","depends":["a",]"#),
            format!(
                "{{\"hash\":\"{hash}\",\"packages\":[{{\"name\":\"a\u{1}\",\"version\":\"1\",\"arch\":\"any\",\"reason\":\"explicit\"}}]}}"
            ),
        ];
        for json in &refused {
            assert_eq!(fast::read(json), None, "{json}");
            assert!(read_report(json).is_err(), "{json}");
        }
    }
}
