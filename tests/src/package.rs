//! Real package files (`NAME-VERSION-ARCH.pkg.tar.zst`) without makepkg.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What a package file says about itself, and what it installs.
///
/// Versions are any string, as pacman stores them (`1:2.0-1`,
/// `2.38.0+r5+g1a2b-1.1`); pacman itself refuses to load a package whose
/// version has no `-pkgrel`, which lets tests build such a file on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSpec {
    pub name: String,
    pub version: String,
    pub base: String,
    pub arch: String,
    pub description: String,
    pub url: String,
    pub packager: String,
    pub builddate: u64,
    pub licenses: Vec<String>,
    /// Installed size; `None` means the sum of the payload files.
    pub size: Option<u64>,
    pub depends: Vec<String>,
    pub optdepends: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub replaces: Vec<String>,
    pub groups: Vec<String>,
    /// Payload: path inside the root (no leading `/`) → contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl PackageSpec {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> PackageSpec {
        let name = name.into();
        PackageSpec {
            base: name.clone(),
            description: format!("{name}, a pacsync test package"),
            url: format!("https://example.org/{name}"),
            name,
            version: version.into(),
            arch: "any".into(),
            packager: "pacsync tests <tests@pacsync.invalid>".into(),
            // Fixed, so the same spec always builds the same bytes.
            builddate: 1_700_000_000,
            licenses: vec!["MIT".into()],
            size: None,
            depends: Vec::new(),
            optdepends: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            replaces: Vec::new(),
            groups: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    pub fn base(mut self, base: impl Into<String>) -> Self {
        self.base = base.into();
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    pub fn packager(mut self, packager: impl Into<String>) -> Self {
        self.packager = packager.into();
        self
    }

    pub fn builddate(mut self, builddate: u64) -> Self {
        self.builddate = builddate;
        self
    }

    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Replaces the default license list.
    pub fn licenses<S: Into<String>>(mut self, licenses: impl IntoIterator<Item = S>) -> Self {
        self.licenses = licenses.into_iter().map(Into::into).collect();
        self
    }

    pub fn depends<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.depends.extend(deps.into_iter().map(Into::into));
        self
    }

    pub fn optdepends<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.optdepends.extend(deps.into_iter().map(Into::into));
        self
    }

    pub fn provides<S: Into<String>>(mut self, provides: impl IntoIterator<Item = S>) -> Self {
        self.provides.extend(provides.into_iter().map(Into::into));
        self
    }

    pub fn conflicts<S: Into<String>>(mut self, conflicts: impl IntoIterator<Item = S>) -> Self {
        self.conflicts.extend(conflicts.into_iter().map(Into::into));
        self
    }

    pub fn replaces<S: Into<String>>(mut self, replaces: impl IntoIterator<Item = S>) -> Self {
        self.replaces.extend(replaces.into_iter().map(Into::into));
        self
    }

    pub fn groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Adds a payload file; a leading `/` is dropped.
    pub fn file(mut self, path: impl AsRef<str>, contents: impl AsRef<[u8]>) -> Self {
        let path = path.as_ref().trim_start_matches('/').to_owned();
        self.files.insert(path, contents.as_ref().to_vec());
        self
    }

    /// `NAME-VERSION-ARCH.pkg.tar.zst`, the name repo-add and pacman expect.
    pub fn filename(&self) -> String {
        format!("{}-{}-{}.pkg.tar.zst", self.name, self.version, self.arch)
    }

    /// `NAME-VERSION`, the directory name of the package in a database.
    pub fn db_entry_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    pub fn installed_size(&self) -> u64 {
        self.size
            .unwrap_or_else(|| self.files.values().map(|c| c.len() as u64).sum())
    }

    /// Every path the package installs, directories with a trailing `/`, in
    /// the byte order pacman keeps its file lists in.
    pub fn file_list(&self) -> Vec<String> {
        let mut entries = BTreeSet::new();
        for path in self.files.keys() {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash + 1;
                entries.insert(path[..end].to_owned());
            }
            entries.insert(path.clone());
        }
        entries.into_iter().collect()
    }

    /// The `.PKGINFO` makepkg would write.
    pub fn pkginfo(&self) -> String {
        let mut out = String::from("# Generated by pacsync-tests\n");
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(value);
            out.push('\n');
        };
        line("pkgname", &self.name);
        line("pkgbase", &self.base);
        line("pkgver", &self.version);
        line("pkgdesc", &self.description);
        line("url", &self.url);
        line("builddate", &self.builddate.to_string());
        line("packager", &self.packager);
        line("size", &self.installed_size().to_string());
        line("arch", &self.arch);
        let lists = [
            ("license", &self.licenses),
            ("replaces", &self.replaces),
            ("group", &self.groups),
            ("conflict", &self.conflicts),
            ("provides", &self.provides),
            ("depend", &self.depends),
            ("optdepend", &self.optdepends),
        ];
        for (key, values) in lists {
            for value in values {
                line(key, value);
            }
        }
        out
    }

    /// Writes the package file into `dir` and returns its path.
    pub fn build(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(self.filename());
        self.write_to(&path)
            .with_context(|| format!("building {}", path.display()))?;
        Ok(path)
    }

    fn write_to(&self, path: &Path) -> anyhow::Result<()> {
        let file = File::create(path)?;
        let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3)?);
        // libalpm stops reading at .PKGINFO when it only needs metadata, so
        // it goes first, as makepkg puts it.
        append_entry(
            &mut tar,
            ".PKGINFO",
            Some(self.pkginfo().as_bytes()),
            self.builddate,
        )?;
        for entry in self.file_list() {
            let contents = self.files.get(&entry).map(Vec::as_slice);
            append_entry(&mut tar, &entry, contents, self.builddate)?;
        }
        let mut file = tar.into_inner()?.finish()?;
        file.flush()?;
        Ok(())
    }
}

/// Appends a regular file (`contents`) or a directory (`None`) owned by
/// root, as makepkg and repo-add archive them.
pub(crate) fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    contents: Option<&[u8]>,
    mtime: u64,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    let data = contents.unwrap_or_default();
    let (kind, mode) = match contents {
        Some(_) => (tar::EntryType::Regular, 0o644),
        None => (tar::EntryType::Directory, 0o755),
    };
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root")?;
    header.set_groupname("root")?;
    header.set_mtime(mtime);
    tar.append_data(&mut header, path, data)?;
    Ok(())
}

/// `len` bytes that do not compress (xorshift), so a package file made
/// with them is about as large as its payload.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
