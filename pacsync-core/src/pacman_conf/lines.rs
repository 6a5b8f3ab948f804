//! pacman's line reader (`parse_ini` in `src/common/ini.c`), byte for byte.

use std::borrow::Cow;

/// pacman reads with fgets(3) into a `PATH_MAX` (4096) buffer, so a longer
/// line arrives as several lines of at most 4095 bytes, each with its own line
/// number. Mirroring this keeps values and line numbers identical to pacman's
/// on the rare huge line, instead of inventing a limit of our own.
pub(super) const CHUNK_MAX: usize = 4095;

/// One line that means something (not blank, not a comment).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line {
    pub number: usize,
    pub entry: Entry,
    /// Whether invalid UTF-8 was replaced on this line.
    pub lossy: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// `[name]`; the name is not trimmed, as in pacman (`[ core ]` is a
    /// repository called " core ").
    Section(String),
    /// `key = value`; `value` is `None` without an `=`, and may be empty.
    Directive { key: String, value: Option<String> },
}

/// C's isspace(3) in the C locale: vertical tab and form feed count,
/// Unicode spaces (which `str::trim` would remove) do not.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn trim_c(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !is_c_space(b));
    let Some(start) = start else {
        return &[];
    };
    let end = bytes.iter().rposition(|&b| !is_c_space(b)).unwrap_or(start);
    &bytes[start..=end]
}

/// The meaningful lines of `content`, numbered as pacman numbers them.
pub(super) fn lines(content: &[u8]) -> impl Iterator<Item = Line> + '_ {
    let mut rest = content;
    let mut number = 0usize;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let window = &rest[..rest.len().min(CHUNK_MAX)];
            let len = window
                .iter()
                .position(|&b| b == b'\n')
                .map_or(window.len(), |newline| newline + 1);
            let (chunk, tail) = rest.split_at(len);
            rest = tail;
            number += 1;
            if let Some(line) = classify(chunk, number) {
                return Some(line);
            }
        }
    })
}

fn classify(chunk: &[u8], number: usize) -> Option<Line> {
    // pacman handles the line as a C string: a NUL byte ends it.
    let chunk = match chunk.iter().position(|&b| b == 0) {
        Some(nul) => &chunk[..nul],
        None => chunk,
    };
    let line = trim_c(chunk);
    if line.is_empty() || line[0] == b'#' {
        return None;
    }
    let mut lossy = false;
    let mut text = |bytes: &[u8]| match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => {
            lossy = true;
            s
        }
    };
    let entry = if line.len() >= 2 && line[0] == b'[' && line[line.len() - 1] == b']' {
        Entry::Section(text(&line[1..line.len() - 1]))
    } else {
        match line.iter().position(|&b| b == b'=') {
            Some(eq) => Entry::Directive {
                key: text(trim_c(&line[..eq])),
                value: Some(text(trim_c(&line[eq + 1..]))),
            },
            None => Entry::Directive {
                key: text(line),
                value: None,
            },
        }
    };
    Some(Line {
        number,
        entry,
        lossy,
    })
}

/// pacman's list values: split on spaces only (strtok_r with " "), so a tab
/// stays inside a word.
pub(super) fn words(value: &str) -> impl Iterator<Item = &str> {
    value.split(' ').filter(|word| !word.is_empty())
}

/// Whether pacman's wordsplit() rejects an `XferCommand` (an unclosed quote).
pub(super) fn has_unbalanced_quote(command: &str) -> bool {
    let bytes = command.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_c_space(b) {
            i += 1;
        } else if b == b'\'' || b == b'"' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return true,
                    Some(&c) if c == b => break,
                    Some(b'\\') if bytes.get(i + 1) == Some(&b) => i += 2,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        } else if b == b'\\' && matches!(bytes.get(i + 1), Some(b'\'' | b'"')) {
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}
