//! What this machine has: its package state and its repositories, read from
//! pacman's own files.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use pacsync_core::analysis::RepoIndex;
use pacsync_core::package::Origin;
use pacsync_core::pacman_conf::PacmanConf;
use pacsync_core::state::PackageState;
use pacsync_core::syncdb::SyncEntry;

use crate::config::PacmanConfig;

/// The paths pacman uses on this machine, after the daemon's overrides.
#[derive(Debug, Clone)]
pub struct PacmanPaths {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub root: PathBuf,
    pub dbpath: PathBuf,
    pub cache_dirs: Vec<PathBuf>,
}

impl PacmanPaths {
    pub fn local_dir(&self) -> PathBuf {
        self.dbpath.join("local")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.dbpath.join("db.lck")
    }

    pub fn sync_db(&self, repo: &str) -> PathBuf {
        self.dbpath.join("sync").join(format!("{repo}.db"))
    }
}

/// One sync repository: its servers and the entries of its database.
#[derive(Debug, Clone)]
pub struct SyncRepo {
    pub name: String,
    pub servers: Vec<String>,
    /// Entries by package name.
    pub entries: HashMap<String, SyncEntry>,
}

/// A complete reading of the machine.
#[derive(Debug, Clone)]
pub struct MachineSnapshot {
    pub state: PackageState,
    pub repos: Vec<SyncRepo>,
    pub paths: PacmanPaths,
}

impl MachineSnapshot {
    /// The sync repositories as the server's repository analysis takes
    /// them, in pacman.conf order.
    pub fn repo_indexes(&self) -> Vec<RepoIndex> {
        self.repos
            .iter()
            .map(|r| RepoIndex {
                name: r.name.clone(),
                packages: r
                    .entries
                    .values()
                    .map(|e| (e.name.clone(), e.version.clone()))
                    .collect(),
            })
            .collect()
    }
}

/// Read pacman.conf, the local database and every sync database.
pub fn read_machine(cfg: &PacmanConfig) -> anyhow::Result<MachineSnapshot> {
    let arch =
        pacsync_pacman::conf::machine_arch().context("cannot tell the machine architecture")?;
    let conf = pacsync_pacman::conf::load_pacman_conf(&cfg.config, &arch)
        .with_context(|| format!("cannot read {}", cfg.config.display()))?;
    let paths = resolve_paths(cfg, &conf);
    let local = pacsync_pacman::db::read_local_db(&paths.dbpath).with_context(|| {
        format!(
            "cannot read the local database in {}",
            paths.dbpath.display()
        )
    })?;

    let mut repos = Vec::with_capacity(conf.repos.len());
    for repo in &conf.repos {
        let path = paths.sync_db(&repo.name);
        // A repository never synced (`pacman -Sy`) has no database yet: it
        // offers nothing, which is what pacman would find too.
        let entries = if path.exists() {
            pacsync_pacman::db::read_sync_db(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
        } else {
            Vec::new()
        };
        repos.push(SyncRepo {
            name: repo.name.clone(),
            servers: repo.servers.clone(),
            entries: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
        });
    }

    let state = local
        .iter()
        .map(|lp| {
            let mut p = lp.to_package();
            p.origin = Some(
                repos
                    .iter()
                    .find(|r| r.entries.contains_key(&p.name))
                    .map_or(Origin::Foreign, |r| Origin::Repo(r.name.clone())),
            );
            p
        })
        .collect();
    Ok(MachineSnapshot {
        state,
        repos,
        paths,
    })
}

fn resolve_paths(cfg: &PacmanConfig, conf: &PacmanConf) -> PacmanPaths {
    let root = cfg
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(&conf.options.root_dir));
    let dbpath = cfg
        .dbpath
        .clone()
        .unwrap_or_else(|| PathBuf::from(&conf.options.db_path));
    PacmanPaths {
        binary: cfg.binary.clone(),
        config: cfg.config.clone(),
        root,
        dbpath,
        cache_dirs: conf.options.cache_dirs.iter().map(PathBuf::from).collect(),
    }
}
