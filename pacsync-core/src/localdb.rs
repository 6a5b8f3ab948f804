//! An installed package as pacman records it in the local database
//! (`/var/lib/pacman/local/NAME-PKGVER-PKGREL/desc`).

use serde::{Deserialize, Serialize};

use crate::desc::{DescError, DescReader, Field, KnownFields, MAX_DESC_LEN};
use crate::package::{InstallReason, Package};
use crate::version::Version;

/// Every field pacman writes to a local `desc` file.
///
/// Text fields pacman may leave out are `Option`s: pacman tells an absent
/// field (`NULL`) from an empty one. Numbers pacman leaves out when zero
/// read as zero, the value pacman itself assumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPackage {
    pub name: String,
    pub version: Version,
    pub base: Option<String>,
    pub desc: Option<String>,
    pub url: Option<String>,
    pub arch: Option<String>,
    /// Unix time; 0 when unknown.
    pub build_date: i64,
    /// Unix time; 0 when unknown.
    pub install_date: i64,
    pub packager: Option<String>,
    /// Installed size in bytes.
    pub size: u64,
    pub reason: InstallReason,
    pub groups: Vec<String>,
    pub licenses: Vec<String>,
    /// How the package file was checked: `none`, `md5`, `sha256`, `pgp`.
    pub validation: Vec<String>,
    pub replaces: Vec<String>,
    pub depends: Vec<String>,
    /// `name[: description]` as written.
    pub optdepends: Vec<String>,
    pub conflicts: Vec<String>,
    pub provides: Vec<String>,
    /// Extended data, `key=value` (e.g. `pkgtype=pkg`).
    pub xdata: Vec<String>,
}

impl LocalPackage {
    /// The part of the package pacsync compares between machines.
    pub fn to_package(&self) -> Package {
        Package {
            name: self.name.clone(),
            version: self.version.clone(),
            arch: self.arch.clone().unwrap_or_default(),
            reason: self.reason,
            origin: None,
            installed_size: self.size,
            depends: self.depends.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Name,
    Version,
    Base,
    Desc,
    Url,
    Arch,
    BuildDate,
    InstallDate,
    Packager,
    Size,
    Reason,
    Groups,
    License,
    Validation,
    Replaces,
    Depends,
    OptDepends,
    Conflicts,
    Provides,
    XData,
}

/// In the order pacman writes them (see [`KnownFields`]).
static KEYS: [(&str, Key); 20] = [
    ("NAME", Key::Name),
    ("VERSION", Key::Version),
    ("BASE", Key::Base),
    ("DESC", Key::Desc),
    ("URL", Key::Url),
    ("ARCH", Key::Arch),
    ("BUILDDATE", Key::BuildDate),
    ("INSTALLDATE", Key::InstallDate),
    ("PACKAGER", Key::Packager),
    ("SIZE", Key::Size),
    ("REASON", Key::Reason),
    ("GROUPS", Key::Groups),
    ("LICENSE", Key::License),
    ("VALIDATION", Key::Validation),
    ("REPLACES", Key::Replaces),
    ("DEPENDS", Key::Depends),
    ("OPTDEPENDS", Key::OptDepends),
    ("CONFLICTS", Key::Conflicts),
    ("PROVIDES", Key::Provides),
    ("XDATA", Key::XData),
];

/// Parses a local database `desc` file.
///
/// Unknown keys are skipped so that fields added by a later pacman do not
/// break reading; a known key given twice is an error.
pub fn parse_local_desc(bytes: &[u8]) -> Result<LocalPackage, DescError> {
    if bytes.len() > MAX_DESC_LEN {
        return Err(DescError::TooLarge {
            len: bytes.len(),
            max: MAX_DESC_LEN,
        });
    }
    let mut pkg = LocalPackage {
        name: String::new(),
        version: Version::new(String::new()),
        base: None,
        desc: None,
        url: None,
        arch: None,
        build_date: 0,
        install_date: 0,
        packager: None,
        size: 0,
        reason: InstallReason::Explicit,
        groups: Vec::new(),
        licenses: Vec::new(),
        validation: Vec::new(),
        replaces: Vec::new(),
        depends: Vec::new(),
        optdepends: Vec::new(),
        conflicts: Vec::new(),
        provides: Vec::new(),
        xdata: Vec::new(),
    };
    let mut known = KnownFields::new(&KEYS);
    for field in DescReader::new(bytes)? {
        let field = field?;
        if let Some((key, which)) = known.lookup(&field)? {
            store(&mut pkg, which, key, &field)?;
        }
    }
    known.require("NAME")?;
    known.require("VERSION")?;
    Ok(pkg)
}

fn store(
    pkg: &mut LocalPackage,
    which: Key,
    key: &'static str,
    field: &Field<'_>,
) -> Result<(), DescError> {
    let text = |field: &Field<'_>| field.single(key).map(|v| Some(v.to_owned()));
    match which {
        Key::Name => pkg.name = field.required(key)?.to_owned(),
        Key::Version => pkg.version = Version::new(field.required(key)?),
        Key::Base => pkg.base = text(field)?,
        Key::Desc => pkg.desc = text(field)?,
        Key::Url => pkg.url = text(field)?,
        Key::Arch => pkg.arch = text(field)?,
        Key::Packager => pkg.packager = text(field)?,
        Key::BuildDate => pkg.build_date = field.number(key)?,
        Key::InstallDate => pkg.install_date = field.number(key)?,
        Key::Size => pkg.size = field.number(key)?,
        Key::Reason => {
            pkg.reason = match field.single(key)? {
                "0" => InstallReason::Explicit,
                "1" => InstallReason::Dependency,
                other => return Err(field.invalid(key, other, "0 or 1")),
            }
        }
        Key::Groups => pkg.groups = field.to_list(),
        Key::License => pkg.licenses = field.to_list(),
        Key::Validation => pkg.validation = field.to_list(),
        Key::Replaces => pkg.replaces = field.to_list(),
        Key::Depends => pkg.depends = field.to_list(),
        Key::OptDepends => pkg.optdepends = field.to_list(),
        Key::Conflicts => pkg.conflicts = field.to_list(),
        Key::Provides => pkg.provides = field.to_list(),
        Key::XData => pkg.xdata = field.to_list(),
    }
    Ok(())
}

/// Splits a database entry name `NAME-PKGVER-PKGREL` (anything after a `/`
/// ignored) at its last two dashes, as pacman does: package names may
/// contain dashes, versions may not. This is all `pacman -Q` reads.
pub fn split_entry_name(entry: &str) -> Option<(&str, &str)> {
    let entry = entry.split_once('/').map_or(entry, |(dir, _)| dir);
    let rel_dash = entry.rfind('-')?;
    let ver_dash = entry[..rel_dash].rfind('-')?;
    let (name, version) = (&entry[..ver_dash], &entry[ver_dash + 1..]);
    let empty_part = name.is_empty() || ver_dash + 1 == rel_dash || rel_dash + 1 == entry.len();
    (!empty_part).then_some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPTABLES: &str = "%NAME%\niptables\n\n%VERSION%\n1:1.8.2-1\n\n\
        %BASE%\niptables\n\n%DESC%\nLinux kernel packet control tool\n\n\
        %URL%\nhttps://www.netfilter.org/\n\n%ARCH%\nx86_64\n\n\
        %BUILDDATE%\n1542121917\n\n%INSTALLDATE%\n1553684924\n\n\
        %PACKAGER%\nJan Steffens <jan@example.org>\n\n%SIZE%\n2558976\n\n\
        %REASON%\n1\n\n%GROUPS%\nbase\n\n%LICENSE%\nGPL2\n\n%VALIDATION%\npgp\n\n\
        %REPLACES%\nold-iptables\n\n%DEPENDS%\nlibnftnl\nbash\n\n\
        %OPTDEPENDS%\nperl: for the scripts\n\n%CONFLICTS%\nnft<1\n\n\
        %PROVIDES%\nlibip4tc.so=2-64\n\n%XDATA%\npkgtype=pkg\n\n";

    fn with(extra: &str) -> Vec<u8> {
        format!("%NAME%\nfoo\n\n%VERSION%\n1.0-1\n\n{extra}").into_bytes()
    }

    #[test]
    fn reads_every_field() {
        let pkg = parse_local_desc(IPTABLES.as_bytes()).expect("valid desc");
        assert_eq!(pkg.name, "iptables");
        assert_eq!(pkg.version.as_str(), "1:1.8.2-1");
        assert_eq!(pkg.base.as_deref(), Some("iptables"));
        assert_eq!(
            pkg.desc.as_deref(),
            Some("Linux kernel packet control tool")
        );
        assert_eq!(pkg.url.as_deref(), Some("https://www.netfilter.org/"));
        assert_eq!(pkg.arch.as_deref(), Some("x86_64"));
        assert_eq!((pkg.build_date, pkg.install_date), (1542121917, 1553684924));
        assert_eq!(
            pkg.packager.as_deref(),
            Some("Jan Steffens <jan@example.org>")
        );
        assert_eq!(pkg.size, 2558976);
        assert_eq!(pkg.reason, InstallReason::Dependency);
        assert_eq!(pkg.groups, ["base"]);
        assert_eq!(pkg.licenses, ["GPL2"]);
        assert_eq!(pkg.validation, ["pgp"]);
        assert_eq!(pkg.replaces, ["old-iptables"]);
        assert_eq!(pkg.depends, ["libnftnl", "bash"]);
        assert_eq!(pkg.optdepends, ["perl: for the scripts"]);
        assert_eq!(pkg.conflicts, ["nft<1"]);
        assert_eq!(pkg.provides, ["libip4tc.so=2-64"]);
        assert_eq!(pkg.xdata, ["pkgtype=pkg"]);

        let package = pkg.to_package();
        assert_eq!(package.name, "iptables");
        assert_eq!(package.arch, "x86_64");
        assert_eq!(package.reason, InstallReason::Dependency);
        assert_eq!(package.installed_size, 2558976);
        assert_eq!(package.depends, ["libnftnl", "bash"]);
        assert_eq!(package.origin, None);
    }

    #[test]
    fn minimal_desc_has_pacman_defaults() {
        let pkg = parse_local_desc(&with("")).expect("valid desc");
        assert_eq!(pkg.reason, InstallReason::Explicit);
        assert_eq!((pkg.size, pkg.build_date), (0, 0));
        assert_eq!((pkg.desc, pkg.arch), (None, None));
        let pkg = parse_local_desc(&with("%REASON%\n0\n\n%DESC%\n\n\n")).expect("valid desc");
        assert_eq!(pkg.reason, InstallReason::Explicit);
        assert_eq!(pkg.desc.as_deref(), Some(""));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let pkg = parse_local_desc(&with("%FUTURE%\na\nb\n\n%FUTURE%\nc\n\n")).expect("valid");
        assert_eq!(pkg.name, "foo");
    }

    #[test]
    fn missing_name_or_version() {
        assert_eq!(
            parse_local_desc(b"%VERSION%\n1-1\n\n"),
            Err(DescError::MissingField { key: "NAME" })
        );
        assert_eq!(
            parse_local_desc(b"%NAME%\nfoo\n\n"),
            Err(DescError::MissingField { key: "VERSION" })
        );
        assert!(matches!(
            parse_local_desc(b"%NAME%\n\n%VERSION%\n1-1\n\n"),
            Err(DescError::InvalidValue {
                key: "NAME",
                line: 2,
                ..
            })
        ));
    }

    #[test]
    fn duplicate_fields() {
        assert_eq!(
            parse_local_desc(&with("%SIZE%\n1\n\n%SIZE%\n2\n\n")),
            Err(DescError::DuplicateField {
                key: "SIZE",
                line: 10,
                first: 7
            })
        );
    }

    #[test]
    fn bad_numbers_and_reasons() {
        for (extra, key, line) in [
            ("%SIZE%\n12 MiB\n\n", "SIZE", 8),
            ("%BUILDDATE%\nyesterday\n\n", "BUILDDATE", 8),
            ("%INSTALLDATE%\n99999999999999999999\n\n", "INSTALLDATE", 8),
            ("%REASON%\n2\n\n", "REASON", 8),
        ] {
            match parse_local_desc(&with(extra)) {
                Err(DescError::InvalidValue {
                    key: k, line: l, ..
                }) => {
                    assert_eq!((k, l), (key, line), "{extra:?}")
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_binary_and_huge_input() {
        let full = IPTABLES.as_bytes();
        // A cut between two fields leaves a valid file; any other cut shows.
        for cut in (1..full.len()).filter(|&cut| !full[..cut].ends_with(b"\n\n")) {
            assert!(parse_local_desc(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut binary = with("%DESC%\n");
        binary.extend_from_slice(b"\xC3\x28\n\n");
        assert_eq!(
            parse_local_desc(&binary),
            Err(DescError::NotUtf8 { line: 8 })
        );
        let huge = vec![b'\n'; MAX_DESC_LEN + 1];
        assert!(matches!(
            parse_local_desc(&huge),
            Err(DescError::TooLarge { .. })
        ));
    }

    #[test]
    fn entry_names_split_at_the_last_two_dashes() {
        assert_eq!(split_entry_name("acl-2.2.53-1"), Some(("acl", "2.2.53-1")));
        assert_eq!(
            split_entry_name("expac-git-8.1.g5ae006f-1/desc"),
            Some(("expac-git", "8.1.g5ae006f-1"))
        );
        assert_eq!(
            split_entry_name("iptables-1:1.8.2-1"),
            Some(("iptables", "1:1.8.2-1"))
        );
        for bad in ["acl", "acl-1", "-1-1", "acl--1", "acl-1-", ""] {
            assert_eq!(split_entry_name(bad), None, "{bad:?}");
        }
    }
}
