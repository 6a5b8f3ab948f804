//! The database text pacman and repo-add write for a package, field for
//! field and in their order, so generated databases are indistinguishable
//! from real ones. `tests/harness.rs` pins both renderings against what the
//! real tools wrote for the same package.

use pacsync_core::InstallReason;

use crate::package::PackageSpec;

/// How a package came to be in a local database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInstall {
    pub reason: InstallReason,
    pub install_date: u64,
    /// `%VALIDATION%`: `pgp` for Arch's signed packages, `sha256` for a
    /// checksum-verified `-S` without signatures, `none` for `-U`.
    pub validation: String,
}

/// What repo-add measured about a package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFile {
    pub filename: String,
    pub csize: u64,
    pub md5sum: String,
    pub sha256sum: String,
}

/// `local/NAME-VERSION/desc` as pacman 6 writes it on install.
pub fn local_desc(spec: &PackageSpec, install: &LocalInstall) -> String {
    let mut out = Desc::default();
    out.one("NAME", &spec.name);
    out.one("VERSION", &spec.version);
    out.one("BASE", &spec.base);
    out.one("DESC", &spec.description);
    out.one("URL", &spec.url);
    out.one("ARCH", &spec.arch);
    out.one("BUILDDATE", &spec.builddate.to_string());
    out.one("INSTALLDATE", &install.install_date.to_string());
    out.one("PACKAGER", &spec.packager);
    // pacman leaves out a zero size and the default (explicit) reason.
    let size = spec.installed_size();
    if size != 0 {
        out.one("SIZE", &size.to_string());
    }
    if install.reason == InstallReason::Dependency {
        out.one("REASON", "1");
    }
    out.list("GROUPS", &spec.groups);
    out.list("LICENSE", &spec.licenses);
    out.one("VALIDATION", &install.validation);
    out.list("REPLACES", &spec.replaces);
    out.list("DEPENDS", &spec.depends);
    out.list("OPTDEPENDS", &spec.optdepends);
    out.list("CONFLICTS", &spec.conflicts);
    out.list("PROVIDES", &spec.provides);
    out.0
}

/// `local/NAME-VERSION/files`; empty for a package without files, as pacman
/// writes it.
pub fn local_files(spec: &PackageSpec) -> String {
    let mut out = Desc::default();
    out.list("FILES", &spec.file_list());
    out.0
}

/// `NAME-VERSION/desc` in a sync database, as repo-add 6 writes it.
pub fn sync_desc(spec: &PackageSpec, file: &SyncFile) -> String {
    let mut out = Desc::default();
    out.one("FILENAME", &file.filename);
    out.one("NAME", &spec.name);
    out.one("BASE", &spec.base);
    out.one("VERSION", &spec.version);
    out.one("DESC", &spec.description);
    out.list("GROUPS", &spec.groups);
    out.one("CSIZE", &file.csize.to_string());
    // Unlike pacman's %SIZE%, repo-add writes a zero %ISIZE%.
    out.one("ISIZE", &spec.installed_size().to_string());
    out.one("MD5SUM", &file.md5sum);
    out.one("SHA256SUM", &file.sha256sum);
    out.one("URL", &spec.url);
    out.list("LICENSE", &spec.licenses);
    out.one("ARCH", &spec.arch);
    out.one("BUILDDATE", &spec.builddate.to_string());
    out.one("PACKAGER", &spec.packager);
    out.list("REPLACES", &spec.replaces);
    out.list("CONFLICTS", &spec.conflicts);
    out.list("PROVIDES", &spec.provides);
    out.list("DEPENDS", &spec.depends);
    out.list("OPTDEPENDS", &spec.optdepends);
    out.0
}

/// `%KEY%`, one value per line, a blank line; empty fields are left out.
#[derive(Default)]
struct Desc(String);

impl Desc {
    fn one(&mut self, key: &str, value: &str) {
        self.list(key, std::slice::from_ref(&value));
    }

    fn list(&mut self, key: &str, values: &[impl AsRef<str>]) {
        let values: Vec<&str> = values
            .iter()
            .map(AsRef::as_ref)
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return;
        }
        self.0.push('%');
        self.0.push_str(key);
        self.0.push_str("%\n");
        for value in values {
            self.0.push_str(value);
            self.0.push('\n');
        }
        self.0.push('\n');
    }
}
