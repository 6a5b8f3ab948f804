//! Package names a pool never compares nor touches.
//!
//! Patterns are shell globs as pacman reads `IgnorePkg` (`fnmatch(3)` without
//! flags): `*`, `?`, bracket classes `[abc]`, ranges `[a-z]` and negation
//! `[!x]` / `[^x]`. Package names are ASCII, so matching works on bytes.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A pattern that was refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid exclusion pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// One validated glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

/// Longest pattern accepted; a name is at most a few dozen bytes.
const MAX_PATTERN_LEN: usize = 256;

impl Pattern {
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let refuse = |reason| PatternError {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() {
            return Err(refuse("empty"));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(refuse("longer than 256 bytes"));
        }
        if pattern
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(refuse("contains whitespace or control characters"));
        }
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'[' {
                match class_end(bytes, i) {
                    Some(end) => i = end,
                    None => return Err(refuse("unclosed '['")),
                }
            }
            i += 1;
        }
        Ok(Pattern(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl TryFrom<String> for Pattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, PatternError> {
        Pattern::new(&s)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a pool leaves alone: its own patterns plus the names the
/// repository analysis excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusions {
    #[serde(default)]
    pub patterns: Vec<Pattern>,
    #[serde(default)]
    pub names: BTreeSet<String>,
}

impl Exclusions {
    pub fn from_patterns<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PatternError> {
        Ok(Exclusions {
            patterns: patterns
                .into_iter()
                .map(Pattern::new)
                .collect::<Result<_, _>>()?,
            names: BTreeSet::new(),
        })
    }

    pub fn is_excluded(&self, name: &str) -> bool {
        self.names.contains(name) || self.patterns.iter().any(|p| p.matches(name))
    }
}

/// Index of the `]` closing the class that opens at `open`, if any. As in
/// fnmatch, a `]` right after `[`, `[!` or `[^` is a member, not the end.
fn class_end(p: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(p.get(i), Some(b'!' | b'^')) {
        i += 1;
    }
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    p[i.min(p.len())..]
        .iter()
        .position(|&b| b == b']')
        .map(|off| i + off)
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negated, body) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            found |= (body[i]..=body[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    found != negated
}

/// Iterative glob matching with single-star backtracking: linear in
/// practice, no recursion however many stars a pattern has.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => class_end(p, pi)
                .filter(|&end| class_matches(&p[pi + 1..end], s[si]))
                .map(|end| end + 1),
            Some(&c) if c == s[si] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                si += 1;
            }
            (None, Some((star_pi, star_si))) => {
                pi = star_pi + 1;
                si = star_si + 1;
                star = Some((star_pi, star_si + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).expect("valid pattern").matches(s)
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(m("linux-firmware*", "linux-firmware"));
        assert!(m("linux-firmware*", "linux-firmware-whence"));
        assert!(!m("linux-firmware*", "linux"));
        assert!(m("nvidia*", "nvidia-utils"));
        assert!(m("*-git", "expac-git"));
        assert!(!m("*-git", "expac-git2"));
        assert!(m("lib?", "libx"));
        assert!(!m("lib?", "lib"));
        assert!(m("python[23]-*", "python3-six"));
        assert!(!m("python[23]-*", "python4-six"));
        assert!(m("x[!a-c]", "xd"));
        assert!(!m("x[!a-c]", "xb"));
        assert!(m("a[]]b", "a]b"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "foo[", "a b", "x\ny", &"a".repeat(300)] {
            assert!(Pattern::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn exclusions_combine_patterns_and_names() {
        let mut ex = Exclusions::from_patterns(["nvidia*"]).expect("valid");
        ex.names.insert("steam".into());
        assert!(ex.is_excluded("nvidia-dkms"));
        assert!(ex.is_excluded("steam"));
        assert!(!ex.is_excluded("bash"));
    }

    #[test]
    fn patterns_deserialize_validated() {
        let ok: Result<Pattern, _> = serde_json::from_str("\"foo*\"");
        assert!(ok.is_ok());
        let bad: Result<Pattern, _> = serde_json::from_str("\"foo[\"");
        assert!(bad.is_err());
    }
}
