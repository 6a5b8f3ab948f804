//! pacman's version order (`vercmp`), byte for byte.
//!
//! pacman compares raw version strings (`[epoch:]pkgver[-pkgrel]`) and never
//! rejects one, so this module does the same: every string read from a
//! database compares, and the order is the one `vercmp` prints. A parsed,
//! validating type (such as `alpm-types`' `Version`) refuses strings that real
//! databases and AUR builds contain, which would turn a comparison into an
//! error path; the differential test in `tests/` checks this implementation
//! against Debian's `vercmp` binary instead.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A package version as pacman writes it: `[epoch:]pkgver[-pkgrel]`.
///
/// Equality is string equality (what a target pins); ordering is pacman's
/// [`vercmp`], available through [`Version::cmp_pacman`]. The two differ:
/// `1.0` and `1_0` are different strings that `vercmp` calls equal, which is
/// why `Version` does not implement `Ord`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn new(s: impl Into<String>) -> Self {
        Version(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// pacman's order between two versions.
    pub fn cmp_pacman(&self, other: &Version) -> Ordering {
        vercmp(&self.0, &other.0)
    }

    /// The epoch, `0` when absent (as pacman reads it).
    pub fn epoch(&self) -> &str {
        split_evr(self.0.as_bytes()).0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Version {
    fn from(s: &str) -> Self {
        Version(s.to_owned())
    }
}

impl From<String> for Version {
    fn from(s: String) -> Self {
        Version(s)
    }
}

/// Compare two version strings exactly as pacman's `vercmp` does.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (epoch_a, ver_a, rel_a) = split_evr(a.as_bytes());
    let (epoch_b, ver_b, rel_b) = split_evr(b.as_bytes());
    segment_cmp(epoch_a.as_bytes(), epoch_b.as_bytes())
        .then_with(|| segment_cmp(ver_a.as_bytes(), ver_b.as_bytes()))
        .then_with(|| match (rel_a, rel_b) {
            // A release is only compared when both sides have one.
            (Some(ra), Some(rb)) => segment_cmp(ra.as_bytes(), rb.as_bytes()),
            _ => Ordering::Equal,
        })
}

/// Split `[epoch:]version[-release]` the way libalpm does: the epoch is a
/// leading run of digits followed by `:`, the release follows the last `-`
/// after that digit run.
fn split_evr(evr: &[u8]) -> (&str, &str, Option<&str>) {
    let digits = evr.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &evr[digits..];
    let last_dash = rest.iter().rposition(|&b| b == b'-').map(|p| p + digits);
    let (epoch, version_start) = if rest.first() == Some(&b':') {
        let epoch = if digits == 0 {
            "0"
        } else {
            as_str(&evr[..digits])
        };
        (epoch, digits + 1)
    } else {
        ("0", 0)
    };
    match last_dash {
        Some(dash) if dash >= version_start => (
            epoch,
            as_str(&evr[version_start..dash]),
            Some(as_str(&evr[dash + 1..])),
        ),
        _ => (epoch, as_str(&evr[version_start..]), None),
    }
}

fn as_str(bytes: &[u8]) -> &str {
    // The input came from a &str and we only split at ASCII bytes.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// rpm's segment comparison as libalpm implements it (`rpmvercmp`).
fn segment_cmp(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (0usize, 0usize);
    let (mut seg1, mut seg2) = (0usize, 0usize);
    while one < a.len() && two < b.len() {
        while one < a.len() && !a[one].is_ascii_alphanumeric() {
            one += 1;
        }
        while two < b.len() && !b[two].is_ascii_alphanumeric() {
            two += 1;
        }
        if one >= a.len() || two >= b.len() {
            break;
        }
        // Different separator lengths decide on their own.
        let (sep1, sep2) = (one - seg1, two - seg2);
        if sep1 != sep2 {
            return sep1.cmp(&sep2);
        }
        seg1 = one;
        seg2 = two;
        let numeric = a[seg1].is_ascii_digit();
        let class: fn(&u8) -> bool = if numeric {
            u8::is_ascii_digit
        } else {
            u8::is_ascii_alphabetic
        };
        while seg1 < a.len() && class(&a[seg1]) {
            seg1 += 1;
        }
        while seg2 < b.len() && class(&b[seg2]) {
            seg2 += 1;
        }
        // Segments of different kinds: a number beats letters.
        if two == seg2 {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut s1, mut s2) = (&a[one..seg1], &b[two..seg2]);
        if numeric {
            while s1.first() == Some(&b'0') {
                s1 = &s1[1..];
            }
            while s2.first() == Some(&b'0') {
                s2 = &s2[1..];
            }
            match s1.len().cmp(&s2.len()) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match s1.cmp(s2) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        one = seg1;
        two = seg2;
    }
    let (rest1, rest2) = (&a[one.min(a.len())..], &b[two.min(b.len())..]);
    if rest1.is_empty() && rest2.is_empty() {
        return Ordering::Equal;
    }
    // A remaining alphabetic part never beats an empty one ("1.0a" < "1.0"),
    // anything else remaining wins.
    let first_alpha = |s: &[u8]| s.first().is_some_and(u8::is_ascii_alphabetic);
    if (rest1.is_empty() && !first_alpha(rest2)) || first_alpha(rest1) {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn known_orders() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.0-1", "1.0-2", Less),
            ("1:1.0-1", "2.0-1", Greater),
            ("1.0a", "1.0", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0.1", Less),
            ("1.0.a", "1.0", Greater),
            ("1.0", "1.0-1", Equal),
            ("2.38.0+r5+g1a2b-1.1", "2.38.0+r5+g1a2b-1", Greater),
            ("0.2.0_beta-11", "0.2.0-11", Greater),
            ("010", "10", Equal),
            ("1.0.0", "1..0", Less),
            (":1.0", "1.0", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(vercmp(a, b), want, "vercmp({a}, {b})");
            assert_eq!(vercmp(b, a), want.reverse(), "vercmp({b}, {a})");
        }
    }

    #[test]
    fn split_matches_libalpm() {
        assert_eq!(split_evr(b"1:2.0-3"), ("1", "2.0", Some("3")));
        assert_eq!(split_evr(b"2.0"), ("0", "2.0", None));
        assert_eq!(split_evr(b"1-2:3"), ("0", "1", Some("2:3")));
        assert_eq!(split_evr(b":5-1"), ("0", "5", Some("1")));
        assert_eq!(split_evr(b"12-1.1"), ("0", "12", Some("1.1")));
    }
}
