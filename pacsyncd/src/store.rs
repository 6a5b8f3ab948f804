//! What the daemon keeps across restarts, in its state directory
//! (`/var/lib/pacsync/`): the server credentials (root-only) and a cache of
//! everything needed to show a status and sync or revert while the server
//! is unreachable.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use pacsync_core::plan::Policy;
use pacsync_core::state::{PackageState, TargetState};
use pacsync_dbus::{HistoryEntry, TargetInfo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How this machine talks to its server. Readable by root only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub server_url: String,
    pub endpoint_id: String,
    pub machine_name: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server_url", &self.server_url)
            .field("endpoint_id", &self.endpoint_id)
            .field("machine_name", &self.machine_name)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .finish()
    }
}

/// The pool's target as the daemon last received it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedTarget {
    pub info: TargetInfo,
    pub state: TargetState,
    pub policy: Policy,
}

/// Everything else worth keeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cache {
    pub pool: String,
    pub target: Option<CachedTarget>,
    pub last_known_status: String,
    pub last_error: String,
    pub last_sync: i64,
    pub last_report: i64,
    /// The machine's state before its last sync or revert: what Revert
    /// goes back to.
    pub before_last_operation: Option<PackageState>,
    /// Newest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<HistoryEntry>,
    /// An operation that was running when the daemon stopped: on start it
    /// is recorded as failed, since nobody saw it finish.
    pub interrupted_operation: Option<HistoryEntry>,
}

pub const HISTORY_LIMIT: usize = 200;

impl Cache {
    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.insert(0, entry);
        self.history.truncate(HISTORY_LIMIT);
    }
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Create the directory (mode 0700) if needed.
    pub fn open(dir: &Path) -> anyhow::Result<StateDir> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    fn cache_path(&self) -> PathBuf {
        self.dir.join("cache.json")
    }

    pub fn load_credentials(&self) -> anyhow::Result<Option<Credentials>> {
        load(&self.credentials_path())
    }

    pub fn save_credentials(&self, c: &Credentials) -> anyhow::Result<()> {
        save(&self.credentials_path(), c)
    }

    /// A damaged cache is set aside (`cache.json.damaged`) and the daemon
    /// starts from an empty one: it only holds what the next report and
    /// the local databases give back.
    pub fn load_cache(&self) -> Cache {
        let path = self.cache_path();
        match load(&path) {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("{e:#}; starting with an empty cache");
                let _ = fs::rename(&path, path.with_extension("json.damaged"));
                Cache::default()
            }
        }
    }

    pub fn save_cache(&self, c: &Cache) -> anyhow::Result<()> {
        save(&self.cache_path(), c)
    }
}

fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is damaged", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write to a temporary file (mode 0600), sync, then rename over the old
/// one: a crash leaves either the old or the new file, never half of one.
fn save<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_private_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("pacsyncd-store-{}", std::process::id()));
        let sd = StateDir::open(&dir).expect("state dir");
        assert_eq!(sd.load_credentials().expect("none yet"), None);
        let c = Credentials {
            server_url: "http://s".into(),
            endpoint_id: "e1".into(),
            machine_name: "m".into(),
            access_token: "secret-a".into(),
            refresh_token: "secret-r".into(),
        };
        sd.save_credentials(&c).expect("save");
        assert_eq!(sd.load_credentials().expect("load"), Some(c.clone()));
        let mode = fs::metadata(dir.join("credentials.json"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{c:?}").contains("secret"));

        fs::write(dir.join("cache.json"), b"{not json").expect("write");
        assert_eq!(sd.load_cache(), Cache::default());
        assert!(dir.join("cache.json.damaged").exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
