//! Signature levels, computed with libalpm's bit arithmetic.
//!
//! The words of a `SigLevel` line are applied one after another to a starting
//! level, and a repository's line only overrides the bits its words touched
//! (pacman's `merge_siglevel`). Modelling that with anything but the bits gets
//! corner cases wrong: `SigLevel = Never TrustAll` in `[options]` and
//! `SigLevel = Required` in a repository give that repository
//! `PackageRequired PackageTrustAll`, because `Never` keeps the trust bits.

use serde::{Deserialize, Serialize};

// alpm_siglevel_t from alpm.h.
const PACKAGE: u32 = 1;
const PACKAGE_OPTIONAL: u32 = 1 << 1;
const PACKAGE_MARGINAL_OK: u32 = 1 << 2;
const PACKAGE_UNKNOWN_OK: u32 = 1 << 3;
const DATABASE: u32 = 1 << 10;
const DATABASE_OPTIONAL: u32 = 1 << 11;
const DATABASE_MARGINAL_OK: u32 = 1 << 12;
const DATABASE_UNKNOWN_OK: u32 = 1 << 13;
const USE_DEFAULT: u32 = 1 << 30;

/// When signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigCheck {
    Never,
    Optional,
    Required,
}

/// Which keys a checked signature may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigTrust {
    /// Fully trusted keys only.
    TrustedOnly,
    /// Any key in the keyring, also of marginal or unknown trust.
    TrustAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SigPolicy {
    pub check: SigCheck,
    /// Kept under `Never` too: a later or a repository's `Optional` or
    /// `Required` turns checking back on with this trust.
    pub trust: SigTrust,
}

/// An effective signature level, for packages and for databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SigLevel {
    pub package: SigPolicy,
    pub database: SigPolicy,
}

impl SigLevel {
    /// pacman's built-in default, `Optional TrustedOnly`.
    pub const DEFAULT: SigLevel = SigLevel {
        package: SigPolicy {
            check: SigCheck::Optional,
            trust: SigTrust::TrustedOnly,
        },
        database: SigPolicy {
            check: SigCheck::Optional,
            trust: SigTrust::TrustedOnly,
        },
    };

    pub(super) fn from_bits(bits: u32) -> SigLevel {
        let policy = |on: u32, optional: u32, unknown_ok: u32| SigPolicy {
            check: if bits & on == 0 {
                SigCheck::Never
            } else if bits & optional != 0 {
                SigCheck::Optional
            } else {
                SigCheck::Required
            },
            // pacman-conf shows TrustAll from the "unknown" bit alone; the
            // configuration always sets it together with the "marginal" bit.
            trust: if bits & unknown_ok != 0 {
                SigTrust::TrustAll
            } else {
                SigTrust::TrustedOnly
            },
        };
        SigLevel {
            package: policy(PACKAGE, PACKAGE_OPTIONAL, PACKAGE_UNKNOWN_OK),
            database: policy(DATABASE, DATABASE_OPTIONAL, DATABASE_UNKNOWN_OK),
        }
    }
}

impl Default for SigLevel {
    fn default() -> Self {
        SigLevel::DEFAULT
    }
}

/// A level being built from `SigLevel` lines, with the bits they touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SigBits {
    level: u32,
    mask: u32,
}

impl SigBits {
    /// The `[options]` starting point (libalpm built with signature support,
    /// as Arch's and Debian's are).
    pub(super) const OPTIONS_DEFAULT: SigBits = SigBits {
        level: PACKAGE | PACKAGE_OPTIONAL | DATABASE | DATABASE_OPTIONAL,
        mask: 0,
    };

    /// The starting point of a repository or a `-U` level: "use the default".
    pub(super) const INHERIT: SigBits = SigBits {
        level: USE_DEFAULT,
        mask: 0,
    };

    /// Apply one line's words left to right; on an unknown word nothing
    /// changes and that word is returned.
    pub(super) fn apply<'a>(&mut self, words: &[&'a str]) -> Result<(), &'a str> {
        let mut level = self.level;
        let mut mask = self.mask;
        for &word in words {
            let (value, package, database) = if let Some(v) = word.strip_prefix("Package") {
                (v, true, false)
            } else if let Some(v) = word.strip_prefix("Database") {
                (v, false, true)
            } else {
                (word, true, true)
            };
            let mut set = 0;
            let mut unset = 0;
            for (applies, on, optional, trust) in [
                (
                    package,
                    PACKAGE,
                    PACKAGE_OPTIONAL,
                    PACKAGE_MARGINAL_OK | PACKAGE_UNKNOWN_OK,
                ),
                (
                    database,
                    DATABASE,
                    DATABASE_OPTIONAL,
                    DATABASE_MARGINAL_OK | DATABASE_UNKNOWN_OK,
                ),
            ] {
                if !applies {
                    continue;
                }
                match value {
                    "Never" => unset |= on,
                    "Optional" => set |= on | optional,
                    "Required" => {
                        set |= on;
                        unset |= optional;
                    }
                    "TrustedOnly" => unset |= trust,
                    "TrustAll" => set |= trust,
                    _ => return Err(word),
                }
            }
            level = (level | set) & !unset & !USE_DEFAULT;
            mask |= set | unset;
        }
        self.level = level;
        self.mask = mask;
        Ok(())
    }

    pub(super) fn bits(self) -> u32 {
        self.level
    }

    /// This level over `base` (pacman's `merge_siglevel`), where an untouched
    /// level means `base` itself, as libalpm reads `ALPM_SIG_USE_DEFAULT`.
    pub(super) fn over(self, base: u32) -> u32 {
        if self.mask == 0 {
            base
        } else {
            (self.level & self.mask) | (base & !self.mask)
        }
    }
}
