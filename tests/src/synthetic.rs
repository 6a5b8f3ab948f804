//! Realistic, reproducible package sets for large databases: Arch-like names
//! and versions (epochs, git describes, rc and beta tags, dotted pkgrels),
//! dependency DAGs of 0–8 edges per package, shared-library provides, sizes
//! from bytes to hundreds of MiB, and both install reasons.

use std::collections::HashSet;

use pacsync_core::InstallReason;

use crate::desc::LocalInstall;
use crate::package::PackageSpec;

/// One generated package and how it is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticPackage {
    pub spec: PackageSpec,
    pub reason: InstallReason,
    pub install_date: u64,
}

impl SyntheticPackage {
    pub fn local_install(&self) -> LocalInstall {
        LocalInstall {
            reason: self.reason,
            install_date: self.install_date,
            // What Arch's signed packages get.
            validation: "pgp".into(),
        }
    }
}

const PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "",
    "",
    "lib",
    "lib",
    "python-",
    "perl-",
    "ruby-",
    "haskell-",
    "lib32-",
    "xorg-",
    "qt6-",
    "kf5-",
    "gst-plugins-",
    "ttf-",
    "nodejs-",
    "r-",
    "ocaml-",
    "texlive-",
];
const STEMS: &[&str] = &[
    "glib",
    "curl",
    "openssl",
    "zlib",
    "pango",
    "cairo",
    "harfbuzz",
    "freetype",
    "fontconfig",
    "gtk",
    "mesa",
    "wayland",
    "systemd",
    "util-linux",
    "coreutils",
    "bash",
    "readline",
    "ncurses",
    "sqlite",
    "json-c",
    "yaml",
    "xml2",
    "pcre2",
    "icu",
    "boost",
    "llvm",
    "clang",
    "ffmpeg",
    "x264",
    "opus",
    "flac",
    "vorbis",
    "png",
    "jpeg-turbo",
    "tiff",
    "webp",
    "gnutls",
    "nettle",
    "gmp",
    "mpfr",
    "expat",
    "dbus",
    "polkit",
    "pipewire",
    "alsa",
    "bluez",
    "networkmanager",
    "iproute2",
    "nftables",
    "iptables",
    "podman",
    "vim",
    "neovim",
    "emacs",
    "git",
    "mercurial",
    "gcc",
    "binutils",
    "make",
    "cmake",
    "meson",
    "ninja",
    "autoconf",
    "lua",
    "tcl",
    "requests",
    "numpy",
    "scipy",
    "attrs",
    "six",
    "certifi",
    "urllib3",
    "x11",
    "xcb",
    "drm",
    "input",
    "usb",
    "evdev",
];
const SUFFIXES: &[&str] = &[
    "", "", "", "", "", "", "2", "3", "-utils", "-docs", "-git", "-qt", "-gtk3", "-tools", "-data",
    "-bin",
];
const GROUPS: &[&str] = &[
    "base-devel",
    "xorg",
    "gnome",
    "kde-applications",
    "texlive-most",
];
const LICENSES: &[&str] = &[
    "GPL", "GPL2", "GPL3", "LGPL2.1", "MIT", "BSD", "Apache", "custom",
];
const PACKAGERS: &[&str] = &[
    "Bartlomiej Piotrowski <bpiotrowski@archlinux.org>",
    "Christian Hesse <arch@eworm.de>",
    "Evangelos Foutras <evangelos@foutrelis.com>",
    "Felix Yan <felixonmars@archlinux.org>",
];

/// `n` packages from `seed`; the same arguments give the same packages.
/// Dependencies only point at earlier packages, so every one is satisfiable
/// by the set itself.
pub fn synthetic_packages(n: usize, seed: u64) -> Vec<SyntheticPackage> {
    let mut rng = Rng(seed);
    let mut taken = HashSet::new();
    let mut specs: Vec<PackageSpec> = Vec::with_capacity(n);
    let mut required = vec![false; n];
    for i in 0..n {
        let (name, stem) = unique_name(&mut rng, &mut taken, i);
        let mut spec = PackageSpec::new(name.clone(), version(&mut rng))
            .arch(if rng.chance(15) { "any" } else { "x86_64" })
            .description(format!(
                "The {stem} {}",
                rng.pick(&["library", "tool", "bindings"])
            ))
            .url(format!("https://{stem}.example.org/"))
            .packager(*rng.pick(PACKAGERS))
            .builddate(1_500_000_000 + rng.below(250_000_000))
            .licenses([*rng.pick(LICENSES)])
            .size(size(&mut rng));
        if name.starts_with("lib") {
            let soname = format!("lib{stem}.so={}-64", 1 + rng.below(12));
            spec = spec.provides([soname]);
        }
        if let Some(plain) = name.strip_suffix("-git") {
            spec = spec.provides([plain]).conflicts([plain]);
        }
        if rng.chance(5) {
            spec = spec.replaces([format!("{name}-legacy")]);
        }
        if rng.chance(10) {
            spec = spec.groups([*rng.pick(GROUPS)]);
        }
        let wanted = (*rng.pick(&[0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 8])).min(i);
        let mut chosen = HashSet::new();
        while chosen.len() < wanted {
            chosen.insert(rng.below(i as u64) as usize);
        }
        let mut chosen: Vec<usize> = chosen.into_iter().collect();
        chosen.sort_unstable();
        for j in chosen {
            required[j] = true;
            let depend = dependency_on(&mut rng, &specs[j]);
            spec.depends.push(depend);
        }
        spec = spec.file(format!("usr/share/{name}/README"), "");
        if name.starts_with("lib") {
            spec = spec.file(format!("usr/lib/lib{stem}.so.1"), "");
        } else if rng.chance(30) {
            spec = spec.file(format!("usr/bin/{name}"), "");
        }
        specs.push(spec);
    }
    specs
        .into_iter()
        .zip(required)
        .map(|(spec, required)| {
            let dependency = if required {
                rng.chance(80)
            } else {
                rng.chance(15)
            };
            SyntheticPackage {
                install_date: spec.builddate + rng.below(30 * 86_400),
                reason: if dependency {
                    InstallReason::Dependency
                } else {
                    InstallReason::Explicit
                },
                spec,
            }
        })
        .collect()
}

fn unique_name(rng: &mut Rng, taken: &mut HashSet<String>, index: usize) -> (String, &'static str) {
    for _ in 0..8 {
        let stem = *rng.pick(STEMS);
        let name = format!("{}{stem}{}", rng.pick(PREFIXES), rng.pick(SUFFIXES));
        if taken.insert(name.clone()) {
            return (name, stem);
        }
    }
    // Past a few thousand packages the combinations run out.
    let stem = *rng.pick(STEMS);
    let name = format!("{stem}-ext{index}");
    taken.insert(name.clone());
    (name, stem)
}

/// A depend on `target`: by name, by a version floor it satisfies, or by
/// one of its provides.
fn dependency_on(rng: &mut Rng, target: &PackageSpec) -> String {
    if let Some(provision) = target.provides.first()
        && rng.chance(50)
    {
        return provision.clone();
    }
    if rng.chance(25) {
        // Without the pkgrel the floor compares equal to the target's version.
        let floor = target
            .version
            .rsplit_once('-')
            .map_or(target.version.as_str(), |(pkgver, _)| pkgver);
        return format!("{}>={floor}", target.name);
    }
    target.name.clone()
}

fn version(rng: &mut Rng) -> String {
    let (major, minor, patch) = (rng.below(30), rng.below(20), rng.below(40));
    let pkgver = match rng.below(100) {
        0..45 => format!("{major}.{minor}.{patch}"),
        45..60 => format!("{major}.{minor}"),
        60..65 => format!("{major}.{minor}rc{}", 1 + rng.below(4)),
        65..70 => format!("{major}.{minor}.{patch}_beta"),
        70..78 => format!("r{}.{}", rng.below(3000), hex(rng, 7)),
        78..86 => format!(
            "{major}.{minor}.{patch}+r{}+g{}",
            rng.below(200),
            hex(rng, 7)
        ),
        86..93 => format!(
            "2019{:02}{:02}.{}",
            1 + rng.below(12),
            1 + rng.below(28),
            hex(rng, 7)
        ),
        _ => format!("{major}.{minor}.{patch}.{}", rng.below(10)),
    };
    let epoch = if rng.chance(6) {
        format!("{}:", 1 + rng.below(3))
    } else {
        String::new()
    };
    let pkgrel = if rng.chance(8) {
        format!("{}.{}", 1 + rng.below(5), 1 + rng.below(3))
    } else {
        (1 + rng.below(9)).to_string()
    };
    format!("{epoch}{pkgver}-{pkgrel}")
}

/// Log-uniform from 1 KiB to 512 MiB, like real installed sizes.
fn size(rng: &mut Rng) -> u64 {
    let base = 1u64 << (10 + rng.below(19));
    base + rng.below(base)
}

fn hex(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.below(16) as usize]))
        .collect()
}

/// SplitMix64: a few lines, seedable and plenty for test data, where a
/// dependency on `rand` would buy nothing.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n`; `n` must not be 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_packages_and_both_reasons() {
        let a = synthetic_packages(300, 7);
        assert_eq!(a, synthetic_packages(300, 7));
        assert_ne!(a, synthetic_packages(300, 8));
        let names: HashSet<&str> = a.iter().map(|p| p.spec.name.as_str()).collect();
        assert_eq!(names.len(), 300, "names are unique");
        assert!(a.iter().any(|p| p.reason == InstallReason::Dependency));
        assert!(a.iter().any(|p| p.reason == InstallReason::Explicit));
        assert!(a.iter().any(|p| p.spec.depends.len() >= 6));
        assert!(a.iter().all(|p| p.spec.depends.len() <= 8));
        assert!(a.iter().any(|p| p.spec.version.contains(':')));
    }
}
