//! The ALPM `desc` text format, shared by the local database (`desc`) and
//! sync database entries (`desc`, `depends`, `files`).
//!
//! A file is a series of fields: a `%KEY%` line, one value per line, and a
//! blank line that closes the field. pacman writes every field closed, so a
//! field that runs into the end of the file means the file was cut short,
//! and a value list silently missing its tail is worse than an error.
//!
//! The reader borrows from the input and allocates nothing; the callers
//! ([`crate::localdb`], [`crate::syncdb`]) decide which keys they know.

use std::str::FromStr;

use thiserror::Error;

/// Longest accepted line. Real values stay far below it (a PGP signature is
/// under 1 KiB, a path under 4 KiB); the cap turns a corrupt or hostile
/// file into an error instead of a huge allocation.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Largest accepted `desc` file. Real ones are a few KiB.
pub const MAX_DESC_LEN: usize = 1024 * 1024;

/// Why a `desc` file could not be read. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DescError {
    #[error("line {line}: not valid UTF-8 (binary data?)")]
    NotUtf8 { line: usize },
    #[error("line {line}: contains a NUL byte (binary data?)")]
    NulByte { line: usize },
    #[error("line {line}: the last line has no newline (file truncated?)")]
    UnterminatedLine { line: usize },
    #[error("line {line}: %{key}% is not closed by a blank line (file truncated?)")]
    UnclosedField { key: String, line: usize },
    #[error("line {line}: expected a %KEY% line, found {found:?}")]
    ExpectedKey { line: usize, found: String },
    #[error("line {line}: {len} bytes long, the limit is {max}")]
    LineTooLong { line: usize, len: usize, max: usize },
    #[error("{len} bytes long, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("line {line}: %{key}% given a second time (first at line {first})")]
    DuplicateField {
        key: &'static str,
        line: usize,
        first: usize,
    },
    #[error("line {line}: %{key}% takes one value, found {count}")]
    NotSingleValue {
        key: &'static str,
        line: usize,
        count: usize,
    },
    #[error("line {line}: %{key}% value {value:?} is not {expected}")]
    InvalidValue {
        key: &'static str,
        line: usize,
        value: String,
        expected: &'static str,
    },
    #[error("%{key}% is missing")]
    MissingField { key: &'static str },
}

/// One `%KEY%` field and its value lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The key without its `%` signs.
    pub key: &'a str,
    /// Line number of the `%KEY%` line.
    pub line: usize,
    /// The value lines, each ending in `\n`.
    block: &'a str,
    /// Number of value lines.
    count: usize,
}

impl<'a> Field<'a> {
    /// The value lines in order.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut rest = self.block;
        std::iter::from_fn(move || {
            let end = newline(rest)?;
            let value = &rest[..end];
            rest = &rest[end + 1..];
            Some(value)
        })
    }

    /// Number of value lines.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value of a single-valued field. No value line reads as the empty
    /// string: pacman writes `%DESC%` with an empty line for an empty
    /// description, which this reader sees as a field without values.
    pub fn single(&self, key: &'static str) -> Result<&'a str, DescError> {
        match self.count {
            0 => Ok(""),
            1 => Ok(&self.block[..self.block.len() - 1]),
            count => Err(DescError::NotSingleValue {
                key,
                line: self.line,
                count,
            }),
        }
    }

    /// A single non-empty value (names, versions).
    pub fn required(&self, key: &'static str) -> Result<&'a str, DescError> {
        let value = self.single(key)?;
        if value.is_empty() {
            return Err(self.invalid(key, value, "a non-empty value"));
        }
        Ok(value)
    }

    /// A single decimal number (sizes, dates).
    pub fn number<T: FromStr>(&self, key: &'static str) -> Result<T, DescError> {
        let value = self.single(key)?;
        // `FromStr` for integers accepts a leading `+`; pacman never writes one.
        if value.starts_with('+') {
            return Err(self.invalid(key, value, "a decimal number"));
        }
        value
            .parse()
            .map_err(|_| self.invalid(key, value, "a decimal number"))
    }

    /// The values as owned strings.
    pub fn to_list(&self) -> Vec<String> {
        let mut list = Vec::with_capacity(self.len());
        list.extend(self.values().map(str::to_owned));
        list
    }

    /// An error about the value of a single-valued field, on its line.
    pub fn invalid(&self, key: &'static str, value: &str, expected: &'static str) -> DescError {
        DescError::InvalidValue {
            key,
            line: self.line + 1,
            value: shorten(value),
            expected,
        }
    }
}

/// Iterates over the fields of a `desc` file.
#[derive(Debug, Clone)]
pub struct DescReader<'a> {
    text: &'a str,
    pos: usize,
    /// Number of the line starting at `pos`.
    line: usize,
}

impl<'a> DescReader<'a> {
    /// Checks the whole input once (UTF-8, no NUL, ends in a newline) so
    /// that iteration only has to split lines. The caller caps the total
    /// size: it knows how large its kind of file may be.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DescError> {
        let text = std::str::from_utf8(bytes).map_err(|e| DescError::NotUtf8 {
            line: line_of(bytes, e.valid_up_to()),
        })?;
        if bytes.contains(&0) {
            let at = bytes.iter().position(|&b| b == 0).unwrap_or_default();
            return Err(DescError::NulByte {
                line: line_of(bytes, at),
            });
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(DescError::UnterminatedLine {
                line: line_of(bytes, text.len()),
            });
        }
        Ok(DescReader {
            text,
            pos: 0,
            line: 1,
        })
    }

    /// The next line without its newline, checked against [`MAX_LINE_LEN`].
    fn next_line(&mut self) -> Option<Result<(usize, &'a str), DescError>> {
        let rest = &self.text[self.pos..];
        // `new` guarantees the text ends in a newline.
        let len = newline(rest)?;
        let line = self.line;
        self.pos += len + 1;
        self.line += 1;
        if len > MAX_LINE_LEN {
            return Some(Err(DescError::LineTooLong {
                line,
                len,
                max: MAX_LINE_LEN,
            }));
        }
        Some(Ok((line, &rest[..len])))
    }
}

impl<'a> Iterator for DescReader<'a> {
    type Item = Result<Field<'a>, DescError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Blank lines between fields carry nothing.
        let (line, text) = loop {
            match self.next_line()? {
                Ok((_, "")) => continue,
                Ok(found) => break found,
                Err(e) => return Some(Err(e)),
            }
        };
        let key = match text.strip_prefix('%').and_then(|k| k.strip_suffix('%')) {
            Some(key) => key,
            None => {
                self.pos = self.text.len();
                return Some(Err(DescError::ExpectedKey {
                    line,
                    found: shorten(text),
                }));
            }
        };
        let start = self.pos;
        let mut count = 0;
        loop {
            match self.next_line() {
                Some(Ok((_, ""))) => {
                    let block = &self.text[start..self.pos - 1];
                    return Some(Ok(Field {
                        key,
                        line,
                        block,
                        count,
                    }));
                }
                Some(Ok(_)) => count += 1,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    return Some(Err(DescError::UnclosedField {
                        key: shorten(key),
                        line,
                    }));
                }
            }
        }
    }
}

/// The keys a reader knows, each mapped to the caller's `T`: finds the known
/// key of a field, rejects a known field given twice (pacman would silently
/// keep one of them) and tells which were present.
#[derive(Debug)]
pub struct KnownFields<T: 'static, const N: usize> {
    keys: &'static [(&'static str, T); N],
    /// Line of each key's field, 0 while not seen.
    lines: [usize; N],
    /// Where the next search starts: writers emit keys in a fixed order, so
    /// listing `keys` in that order makes the first comparison hit.
    next: usize,
}

impl<T: Copy, const N: usize> KnownFields<T, N> {
    pub fn new(keys: &'static [(&'static str, T); N]) -> Self {
        KnownFields {
            keys,
            lines: [0; N],
            next: 0,
        }
    }

    /// The key of `field` and its `T`, `None` for an unknown key.
    pub fn lookup(&mut self, field: &Field<'_>) -> Result<Option<(&'static str, T)>, DescError> {
        let Some(index) = (0..N)
            .map(|i| (self.next + i) % N)
            .find(|&i| self.keys[i].0 == field.key)
        else {
            return Ok(None);
        };
        let (key, value) = self.keys[index];
        if self.lines[index] != 0 {
            let first = self.lines[index];
            return Err(DescError::DuplicateField {
                key,
                line: field.line,
                first,
            });
        }
        self.lines[index] = field.line;
        self.next = index + 1;
        Ok(Some((key, value)))
    }

    /// Fails with [`DescError::MissingField`] unless `key` was seen.
    pub fn require(&self, key: &'static str) -> Result<(), DescError> {
        match self.keys.iter().position(|(k, _)| *k == key) {
            Some(index) if self.lines[index] != 0 => Ok(()),
            _ => Err(DescError::MissingField { key }),
        }
    }
}

/// Offset of the first newline, eight bytes at a time: line splitting is
/// most of the parse, and `str::find`'s searcher costs more on short lines.
fn newline(text: &str) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let bytes = text.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        // Zero bytes of `x` are the newlines; this is "x has a zero byte".
        let x = u64::from_ne_bytes(eight) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        offset += 8;
    }
    bytes[offset..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|at| offset + at)
}

/// Line number (from 1) of byte offset `at`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
}

/// Quotes of untrusted text in errors stay short.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: &str) -> Result<Vec<(String, usize, Vec<String>)>, DescError> {
        DescReader::new(input.as_bytes())?
            .map(|f| f.map(|f| (f.key.to_owned(), f.line, f.to_list())))
            .collect()
    }

    #[test]
    fn reads_fields_values_and_lines() {
        let got = fields("%NAME%\nfoo\n\n%DEPENDS%\na\nb>=1\n\n\n%DESC%\n\n").expect("valid");
        assert_eq!(
            got,
            vec![
                ("NAME".into(), 1, vec!["foo".into()]),
                ("DEPENDS".into(), 4, vec!["a".into(), "b>=1".into()]),
                ("DESC".into(), 9, vec![]),
            ]
        );
        assert_eq!(fields("").expect("empty file"), vec![]);
    }

    #[test]
    fn single_values() {
        let mut reader = DescReader::new(b"%A%\n\n%B%\nx\n\n%C%\nx\ny\n\n").expect("valid");
        let mut next = || reader.next().expect("a field").expect("valid field");
        assert_eq!(next().single("A"), Ok(""));
        assert_eq!(next().single("B"), Ok("x"));
        assert_eq!(
            next().single("C"),
            Err(DescError::NotSingleValue {
                key: "C",
                line: 6,
                count: 2
            })
        );
    }

    #[test]
    fn numbers() {
        let field = |text: &'static str| {
            DescReader::new(text.as_bytes())
                .expect("valid")
                .next()
                .expect("a field")
                .expect("valid field")
        };
        assert_eq!(field("%SIZE%\n42\n\n").number::<u64>("SIZE"), Ok(42));
        for bad in [
            "%SIZE%\n4k\n\n",
            "%SIZE%\n-1\n\n",
            "%SIZE%\n+1\n\n",
            "%SIZE%\n\n",
        ] {
            assert!(
                matches!(
                    field(bad).number::<u64>("SIZE"),
                    Err(DescError::InvalidValue { line: 2, .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn binary_input_names_the_line() {
        assert_eq!(
            DescReader::new(b"%NAME%\nfoo\n\n%DESC%\n\xff\xfe\n\n").err(),
            Some(DescError::NotUtf8 { line: 5 })
        );
        assert_eq!(
            DescReader::new(b"%NAME%\nf\0o\n\n").err(),
            Some(DescError::NulByte { line: 2 })
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(
            DescReader::new(b"%NAME%\nfoo\n\n%DEPENDS%\nglib").err(),
            Some(DescError::UnterminatedLine { line: 5 })
        );
        assert_eq!(
            fields("%NAME%\nfoo\n\n%DEPENDS%\nglibc\n"),
            Err(DescError::UnclosedField {
                key: "DEPENDS".into(),
                line: 4
            })
        );
        assert_eq!(
            fields("%NAME%\n"),
            Err(DescError::UnclosedField {
                key: "NAME".into(),
                line: 1
            })
        );
    }

    #[test]
    fn stray_text_is_an_error() {
        assert_eq!(
            fields("%NAME%\nfoo\n\nbar\n\n"),
            Err(DescError::ExpectedKey {
                line: 4,
                found: "bar".into()
            })
        );
        assert!(matches!(
            fields("%NAME\nfoo\n\n"),
            Err(DescError::ExpectedKey { line: 1, .. })
        ));
    }

    #[test]
    fn long_lines_are_capped() {
        let input = format!("%DESC%\n{}\n\n", "x".repeat(MAX_LINE_LEN + 1));
        assert_eq!(
            fields(&input),
            Err(DescError::LineTooLong {
                line: 2,
                len: MAX_LINE_LEN + 1,
                max: MAX_LINE_LEN
            })
        );
        let input = format!("%{}%\nx\n\n", "K".repeat(MAX_LINE_LEN));
        assert!(matches!(
            fields(&input),
            Err(DescError::LineTooLong { line: 1, .. })
        ));
    }

    #[test]
    fn quoted_text_is_shortened() {
        let err = fields(&format!("{}\n", "é".repeat(500))).expect_err("not a key");
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn known_fields_find_keys_and_reject_duplicates() {
        static KEYS: [(&str, u8); 3] = [("NAME", 0), ("VERSION", 1), ("DESC", 2)];
        let mut known = KnownFields::new(&KEYS);
        let input = "%DESC%\nx\n\n%NAME%\nfoo\n\n%FUTURE%\n\n%DESC%\ny\n\n";
        let mut reader = DescReader::new(input.as_bytes()).expect("valid");
        let mut lookup = || known.lookup(&reader.next().expect("a field").expect("valid"));
        assert_eq!(lookup(), Ok(Some(("DESC", 2))));
        assert_eq!(lookup(), Ok(Some(("NAME", 0))));
        assert_eq!(lookup(), Ok(None));
        assert_eq!(
            lookup(),
            Err(DescError::DuplicateField {
                key: "DESC",
                line: 9,
                first: 1
            })
        );
        assert_eq!(known.require("NAME"), Ok(()));
        assert_eq!(
            known.require("VERSION"),
            Err(DescError::MissingField { key: "VERSION" })
        );
    }
}
