//! A `file://` package repository made by the real `repo-add`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::command::run;
use crate::package::PackageSpec;
use crate::scratch::ScratchDir;

const PACKAGE_SUFFIX: &str = ".pkg.tar.zst";

/// A directory of package files and the database `NAME.db.tar.gz` (with the
/// `NAME.db` symlink pacman downloads) describing them, like a mirror.
///
/// The database and the files can disagree on purpose: [`Repo::remove`]
/// drops database entries and keeps files, [`Repo::delete_package_file`]
/// deletes a file and keeps its entry.
#[derive(Debug)]
pub struct Repo {
    name: String,
    dir: ScratchDir,
}

impl Repo {
    /// An empty repository (repo-add writes an empty database), so a
    /// sandbox can sync it before anything is added.
    pub fn new(name: &str) -> anyhow::Result<Repo> {
        let repo = Repo {
            name: name.to_owned(),
            dir: ScratchDir::new(&format!("pacsync-repo-{name}-"))?,
        };
        repo.repo_add(&[])?;
        Ok(repo)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file itself (`NAME.db` is a symlink to it).
    pub fn db_path(&self) -> PathBuf {
        self.dir().join(format!("{}.db.tar.gz", self.name))
    }

    /// The `Server =` value for pacman.conf.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir().display())
    }

    /// Builds the packages into the repository and adds them to its
    /// database with one repo-add run. A version of a name already in the
    /// database replaces it there, newer or older; the old file stays.
    pub fn add(&self, specs: &[PackageSpec]) -> anyhow::Result<Vec<PathBuf>> {
        let files = specs
            .iter()
            .map(|spec| spec.build(self.dir()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.repo_add(&files)?;
        Ok(files)
    }

    /// Removes names from the database; their files stay, like an archive.
    pub fn remove(&self, names: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new("repo-remove");
        cmd.args(["--quiet", "--nocolor"])
            .arg(self.db_path())
            .args(names)
            .env("LC_ALL", "C");
        run(&mut cmd)?;
        Ok(())
    }

    /// The file of `name` at `version`, whatever its architecture.
    pub fn package_path(&self, name: &str, version: &str) -> anyhow::Result<PathBuf> {
        let prefix = format!("{name}-{version}-");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.dir())? {
            let file_name = entry?.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let arch = file_name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(PACKAGE_SUFFIX));
            // The architecture has no dash, which keeps `foo-1.0-1` from
            // matching `foo-1.0-1.1`'s or `foo-bar`'s files.
            if arch.is_some_and(|arch| !arch.is_empty() && !arch.contains('-')) {
                found.push(self.dir().join(file_name));
            }
        }
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "no package file {name} {version} in {}",
                self.dir().display()
            ),
            _ => bail!("several package files {name} {version}: {found:?}"),
        }
    }

    /// A `file://` URL of the package file, for `pacman -U URL`.
    pub fn package_url(&self, name: &str, version: &str) -> anyhow::Result<String> {
        Ok(format!(
            "file://{}",
            self.package_path(name, version)?.display()
        ))
    }

    /// Deletes the file of one version and leaves the database alone, as when
    /// a version is gone from the mirrors.
    pub fn delete_package_file(&self, name: &str, version: &str) -> anyhow::Result<PathBuf> {
        let path = self.package_path(name, version)?;
        std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        Ok(path)
    }

    fn repo_add(&self, files: &[PathBuf]) -> anyhow::Result<()> {
        let mut cmd = Command::new("repo-add");
        cmd.args(["--quiet", "--nocolor"])
            .arg(self.db_path())
            .args(files)
            .env("LC_ALL", "C");
        run(&mut cmd)?;
        Ok(())
    }
}
