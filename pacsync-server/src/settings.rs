//! Server configuration: defaults, then an optional TOML file, then the
//! environment (the names PRODUCT.md lists), each overriding the one before.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A value kept out of logs: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// The embedded SQLite file.
    Internal,
    Postgresql,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseKind::Internal => "internal",
            DatabaseKind::Postgresql => "postgresql",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "internal" | "sqlite" => Ok(DatabaseKind::Internal),
            "postgresql" | "postgres" => Ok(DatabaseKind::Postgresql),
            other => bail!("DATABASE_TYPE must be internal or postgresql, not {other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub kind: DatabaseKind,
    /// A file path for SQLite, a `postgres://` URL for PostgreSQL; may hold
    /// a password, hence secret.
    pub url: Secret,
    /// Connections in the PostgreSQL pool (SQLite's is
    /// [`sqlite_pool_size`]); by default [`default_pool_size`].
    pub pool_size: u32,
}

/// PostgreSQL connections when nothing says: the server's cores plus one.
/// Each connection is a PostgreSQL process; more of them running at once
/// than there are cores to run them share the cores badly. With PostgreSQL
/// on the server's two cores, 3 connections made state uploads' p99 about
/// half what 16 did, and every other figure as good (docs/benchmarks.md).
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    u32::try_from(cores).unwrap_or(u32::MAX).saturating_add(1)
}

/// SQLite connections: the cores plus two (4 on two cores), at most 8 —
/// one writer at a time, and readers beside it in WAL mode, of which more
/// than the cores can run only wait. Each connection keeps its own page cache and
/// prepared statements, and each blocking thread holding one its own
/// malloc arena: on two cores 4 connections instead of 8 left the server
/// 5–7 MiB smaller after the load benchmark, at the same or better rates
/// (docs/benchmarks.md).
pub fn sqlite_pool_size() -> u32 {
    default_pool_size().saturating_add(1).min(8)
}

impl DatabaseSettings {
    /// Connections the store opens: [`sqlite_pool_size`] on SQLite,
    /// `pool_size` on PostgreSQL.
    pub fn effective_pool_size(&self) -> u32 {
        match self.kind {
            DatabaseKind::Internal => sqlite_pool_size(),
            DatabaseKind::Postgresql => self.pool_size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub http_host: String,
    pub http_port: u16,
    pub log_level: String,
    /// `None`: a random key is generated once and kept in the data dir.
    pub jwt_secret: Option<Secret>,
    /// Requests per minute per client address; 0 turns the limit off.
    pub api_rate_limit: u32,
    pub enable_repository_analysis: bool,
    /// `AUTO_CLEANUP_OLD_STATES`: days of state history to keep; `None`
    /// keeps everything.
    pub auto_cleanup_old_states: Option<u32>,
    pub tls: Option<TlsSettings>,
    pub archive: ArchiveSettings,
}

/// The package archive (docs/archive.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// `ARCHIVE_DIR`; `DATA_DIR/archive` by default.
    pub dir: PathBuf,
    /// `ARCHIVE_MAX_SIZE`: total bytes of package files; `None`: no limit.
    pub max_bytes: Option<u64>,
    /// Where missing files of a target are downloaded from.
    pub mirrors: MirrorSettings,
}

/// Upstream mirrors the archive fills from (docs/archive.md): pacman
/// `Server =` URLs with `$repo` and `$arch`, the repositories whose sync
/// databases are read there and the architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorSettings {
    /// `ARCHIVE_MIRRORS` / `[archive] mirrors`: tried for every pool, after
    /// the pool's own.
    pub default: Vec<String>,
    /// `[archive.pool_mirrors]`: pool name → its own mirrors, tried first.
    pub pools: std::collections::BTreeMap<String, Vec<String>>,
    /// `ARCHIVE_MIRROR_REPOS` / `[archive] mirror_repos`.
    pub repos: Vec<String>,
    /// `ARCHIVE_MIRROR_ARCH` / `[archive] mirror_arch`.
    pub arch: String,
}

/// The repositories read on a mirror unless configured.
pub const DEFAULT_MIRROR_REPOS: [&str; 3] = ["core", "extra", "multilib"];

impl MirrorSettings {
    /// A pool's mirrors: its own first, then the default ones.
    pub fn for_pool(&self, pool_name: &str) -> Vec<String> {
        let mut out: Vec<String> = self.pools.get(pool_name).cloned().unwrap_or_default();
        for m in &self.default {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// Whether any pool has a mirror.
    pub fn any(&self) -> bool {
        !self.default.is_empty() || self.pools.values().any(|l| !l.is_empty())
    }
}

/// `a, b c` → `[a, b, c]`.
fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `123`, `500M`, `20G`, `1T` (powers of 1024) as bytes; `0` is no limit.
fn parse_size(v: &str) -> anyhow::Result<Option<u64>> {
    let t = v.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let factor: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => bail!("ARCHIVE_MAX_SIZE must be a size like 500M or 20G, not {v:?}"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("ARCHIVE_MAX_SIZE must be a size like 500M or 20G, not {v:?}"))?;
    let bytes = n
        .checked_mul(factor)
        .with_context(|| format!("ARCHIVE_MAX_SIZE too large: {v:?}"))?;
    Ok((bytes > 0).then_some(bytes))
}

/// The config file; every key optional, unknown keys refused so a typo
/// does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    jwt_secret_key: Option<String>,
    api_rate_limit: Option<u32>,
    enable_repository_analysis: Option<bool>,
    auto_cleanup_old_states: Option<CleanupSetting>,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    archive: FileArchive,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArchive {
    dir: Option<PathBuf>,
    max_size: Option<String>,
    mirrors: Option<Vec<String>>,
    mirror_repos: Option<Vec<String>>,
    mirror_arch: Option<String>,
    #[serde(default)]
    pool_mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

/// `auto_cleanup_old_states` in the file: `false`, `true` or a number of days.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum CleanupSetting {
    Switch(bool),
    Days(u32),
}

/// Days kept when cleanup is switched on without a number.
pub const DEFAULT_CLEANUP_DAYS: u32 = 90;

impl CleanupSetting {
    fn days(self) -> anyhow::Result<Option<u32>> {
        match self {
            CleanupSetting::Switch(false) | CleanupSetting::Days(0) => Ok(None),
            CleanupSetting::Switch(true) => Ok(Some(DEFAULT_CLEANUP_DAYS)),
            CleanupSetting::Days(d) => Ok(Some(d)),
        }
    }

    fn parse(v: &str) -> anyhow::Result<CleanupSetting> {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(CleanupSetting::Switch(true)),
            "0" | "false" | "no" | "off" => Ok(CleanupSetting::Switch(false)),
            d => d
                .strip_suffix('d')
                .unwrap_or(d)
                .parse()
                .map(CleanupSetting::Days)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "AUTO_CLEANUP_OLD_STATES must be true, false or a number of days, not {v:?}"
                    )
                }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    #[serde(rename = "type")]
    kind: Option<DatabaseKind>,
    url: Option<String>,
    pool_size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    host: Option<String>,
    port: Option<u16>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

pub const DEFAULT_DATA_DIR: &str = "./pacsync-data";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_RATE_LIMIT: u32 = 1200;

impl Settings {
    /// Reads the process environment and the file it names (`PACSYNC_CONFIG`)
    /// or `config` when given.
    pub fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = config
            .map(Path::to_path_buf)
            .or_else(|| env("PACSYNC_CONFIG").map(PathBuf::from));
        Settings::from_sources(path.as_deref(), env)
    }

    /// The same from explicit sources, for tests.
    pub fn from_sources(
        config: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let file: FileSettings = match config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
            None => FileSettings::default(),
        };
        let parse_bool = |name: &str, v: String| -> anyhow::Result<bool> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => bail!("{name} must be true or false, not {v:?}"),
            }
        };
        let parse_num = |name: &str, v: String| -> anyhow::Result<u64> {
            v.trim()
                .parse()
                .with_context(|| format!("{name} must be a number, not {v:?}"))
        };

        let data_dir = env("PACSYNC_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let kind = match env("DATABASE_TYPE") {
            Some(v) => DatabaseKind::parse(&v)?,
            None => file.database.kind.unwrap_or(DatabaseKind::Internal),
        };
        let url = match env("DATABASE_URL").or(file.database.url) {
            Some(u) => u,
            None if kind == DatabaseKind::Internal => {
                data_dir.join("pacsync.db").to_string_lossy().into_owned()
            }
            None => bail!("DATABASE_TYPE=postgresql needs DATABASE_URL (postgres://user@host/db)"),
        };
        let pool_size = match env("DATABASE_POOL_SIZE") {
            Some(v) => u32::try_from(parse_num("DATABASE_POOL_SIZE", v)?)?,
            None => file.database.pool_size.unwrap_or_else(default_pool_size),
        };
        if pool_size == 0 {
            bail!("DATABASE_POOL_SIZE must be at least 1");
        }
        let http_port = match env("HTTP_PORT") {
            Some(v) => u16::try_from(parse_num("HTTP_PORT", v)?).context("HTTP_PORT too large")?,
            None => file.http.port.unwrap_or(DEFAULT_PORT),
        };
        let api_rate_limit = match env("API_RATE_LIMIT") {
            Some(v) => u32::try_from(parse_num("API_RATE_LIMIT", v)?)?,
            None => file.api_rate_limit.unwrap_or(DEFAULT_RATE_LIMIT),
        };
        let enable_repository_analysis = match env("ENABLE_REPOSITORY_ANALYSIS") {
            Some(v) => parse_bool("ENABLE_REPOSITORY_ANALYSIS", v)?,
            None => file.enable_repository_analysis.unwrap_or(true),
        };
        let auto_cleanup_old_states = match env("AUTO_CLEANUP_OLD_STATES") {
            Some(v) => CleanupSetting::parse(&v)?,
            None => file
                .auto_cleanup_old_states
                .unwrap_or(CleanupSetting::Switch(false)),
        }
        .days()?;
        let cert = env("TLS_CERT_FILE")
            .map(PathBuf::from)
            .or(file.http.tls_cert);
        let key = env("TLS_KEY_FILE").map(PathBuf::from).or(file.http.tls_key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsSettings { cert, key }),
            (None, None) => None,
            _ => bail!("TLS needs both TLS_CERT_FILE and TLS_KEY_FILE"),
        };
        let jwt_secret = env("JWT_SECRET_KEY")
            .or(file.jwt_secret_key)
            .map(Secret::new);
        if jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            bail!("JWT_SECRET_KEY must be at least 32 characters");
        }
        let archive = ArchiveSettings {
            dir: env("ARCHIVE_DIR")
                .map(PathBuf::from)
                .or(file.archive.dir)
                .unwrap_or_else(|| data_dir.join("archive")),
            max_bytes: match env("ARCHIVE_MAX_SIZE").or(file.archive.max_size) {
                Some(v) => parse_size(&v)?,
                None => None,
            },
            mirrors: MirrorSettings {
                default: env("ARCHIVE_MIRRORS")
                    .map(|v| split_list(&v))
                    .or(file.archive.mirrors)
                    .unwrap_or_default(),
                pools: file.archive.pool_mirrors,
                repos: env("ARCHIVE_MIRROR_REPOS")
                    .map(|v| split_list(&v))
                    .or(file.archive.mirror_repos)
                    .unwrap_or_else(|| DEFAULT_MIRROR_REPOS.map(str::to_owned).to_vec()),
                arch: env("ARCHIVE_MIRROR_ARCH")
                    .or(file.archive.mirror_arch)
                    .unwrap_or_else(|| "x86_64".to_owned()),
            },
        };
        for url in archive
            .mirrors
            .default
            .iter()
            .chain(archive.mirrors.pools.values().flatten())
        {
            if !(url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("file://"))
            {
                bail!("archive mirror {url:?} must be an http://, https:// or file:// URL");
            }
        }
        Ok(Settings {
            archive,
            data_dir,
            database: DatabaseSettings {
                kind,
                url: Secret::new(url),
                pool_size,
            },
            http_host: env("HTTP_HOST")
                .or(file.http.host)
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            http_port,
            log_level: env("LOG_LEVEL")
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            jwt_secret,
            api_rate_limit,
            enable_repository_analysis,
            auto_cleanup_old_states,
            tls,
        })
    }

    /// The signing key: the configured one, else the one kept in the data
    /// dir, else a new random one written there (mode 0600) for next time.
    pub fn resolve_jwt_secret(&self) -> anyhow::Result<Secret> {
        if let Some(s) = &self.jwt_secret {
            return Ok(s.clone());
        }
        let path = self.data_dir.join("jwt-secret");
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 32 => return Ok(Secret::new(s.trim())),
            Ok(_) => bail!(
                "{} is too short; delete it to make a new key",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let key = crate::auth::random_hex(32)?;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(key.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Secret::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_sources(None, |k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_sqlite_in_the_data_dir() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.database.kind, DatabaseKind::Internal);
        assert_eq!(s.database.url.expose(), "./pacsync-data/pacsync.db");
        assert_eq!(s.http_port, DEFAULT_PORT);
        assert!(s.jwt_secret.is_none());
    }

    #[test]
    fn archive_dir_and_size_limit() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.archive.dir, PathBuf::from("./pacsync-data/archive"));
        assert_eq!(s.archive.max_bytes, None);
        let s = from(&[("ARCHIVE_DIR", "/srv/pkgs"), ("ARCHIVE_MAX_SIZE", "20G")]).expect("valid");
        assert_eq!(s.archive.dir, PathBuf::from("/srv/pkgs"));
        assert_eq!(s.archive.max_bytes, Some(20 << 30));
        assert_eq!(
            from(&[("ARCHIVE_MAX_SIZE", "1500")])
                .expect("bytes")
                .archive
                .max_bytes,
            Some(1500)
        );
        assert_eq!(
            from(&[("ARCHIVE_MAX_SIZE", "0")])
                .expect("none")
                .archive
                .max_bytes,
            None
        );
        assert!(from(&[("ARCHIVE_MAX_SIZE", "lots")]).is_err());
        assert!(from(&[("ARCHIVE_MAX_SIZE", "5Q")]).is_err());
    }

    #[test]
    fn archive_mirrors_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "[archive]\nmirrors = [\"https://a.example/$repo/os/$arch\"]\n\
             mirror_repos = [\"core\"]\n\
             [archive.pool_mirrors]\noffice = [\"http://lan/$repo/os/$arch\"]\n",
        )
        .expect("config");
        let s = Settings::from_sources(Some(&path), |_| None).expect("valid");
        let m = &s.archive.mirrors;
        assert_eq!(
            m.for_pool("office"),
            [
                "http://lan/$repo/os/$arch",
                "https://a.example/$repo/os/$arch"
            ]
        );
        assert_eq!(m.for_pool("lab"), ["https://a.example/$repo/os/$arch"]);
        assert_eq!(
            (m.repos.as_slice(), m.arch.as_str()),
            (&["core".to_owned()][..], "x86_64")
        );
        let s = Settings::from_sources(Some(&path), |k| {
            (k == "ARCHIVE_MIRRORS").then(|| "file:///srv/m/$repo, http://b/$repo".to_owned())
        })
        .expect("valid");
        assert_eq!(
            s.archive.mirrors.for_pool("lab"),
            ["file:///srv/m/$repo", "http://b/$repo"]
        );
        let d = from(&[]).expect("defaults").archive.mirrors;
        assert!(!d.any());
        assert_eq!(d.repos, ["core", "extra", "multilib"]);
        assert!(from(&[("ARCHIVE_MIRRORS", "ftp://old/$repo")]).is_err());
    }

    #[test]
    fn environment_is_read_and_checked() {
        let s = from(&[
            ("DATABASE_TYPE", "postgresql"),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("HTTP_PORT", "9000"),
            ("ENABLE_REPOSITORY_ANALYSIS", "false"),
            ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("valid");
        assert_eq!(s.database.kind, DatabaseKind::Postgresql);
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        assert_eq!(s.database.pool_size as usize, cores + 1);
        assert_eq!(s.database.effective_pool_size() as usize, cores + 1);
        let sqlite = from(&[]).expect("valid");
        assert_eq!(sqlite.database.kind, DatabaseKind::Internal);
        assert_eq!(
            sqlite.database.effective_pool_size() as usize,
            (cores + 2).min(8)
        );
        assert_eq!(
            from(&[
                ("DATABASE_TYPE", "postgresql"),
                ("DATABASE_URL", "postgres://h/db"),
                ("DATABASE_POOL_SIZE", "16"),
            ])
            .expect("valid")
            .database
            .pool_size,
            16
        );
        assert_eq!(s.http_port, 9000);
        assert!(!s.enable_repository_analysis);
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");

        assert!(from(&[("DATABASE_TYPE", "postgresql")]).is_err());
        assert!(from(&[("DATABASE_TYPE", "mysql")]).is_err());
        assert!(from(&[("HTTP_PORT", "70000")]).is_err());
        assert!(from(&[("JWT_SECRET_KEY", "short")]).is_err());
        assert!(from(&[("TLS_CERT_FILE", "/c")]).is_err());
        let days =
            |v: &str| from(&[("AUTO_CLEANUP_OLD_STATES", v)]).map(|s| s.auto_cleanup_old_states);
        assert_eq!(days("30").ok(), Some(Some(30)));
        assert_eq!(days("30d").ok(), Some(Some(30)));
        assert_eq!(days("true").ok(), Some(Some(DEFAULT_CLEANUP_DAYS)));
        assert_eq!(days("off").ok(), Some(None));
        assert!(days("soon").is_err());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "log_level = \"debug\"\n[http]\nport = 7000\nhost = \"0.0.0.0\"\n",
        )
        .expect("write");
        let s = Settings::from_sources(Some(&path), |k| (k == "HTTP_PORT").then(|| "7001".into()))
            .expect("valid");
        assert_eq!((s.http_host.as_str(), s.http_port), ("0.0.0.0", 7001));
        assert_eq!(s.log_level, "debug");
        std::fs::write(&path, "bogus_key = 1\n").expect("write");
        assert!(Settings::from_sources(Some(&path), |_| None).is_err());
    }

    #[test]
    fn generated_secret_is_persisted_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = from(&[]).expect("defaults");
        s.data_dir = dir.path().join("data");
        let a = s.resolve_jwt_secret().expect("generated");
        let b = s.resolve_jwt_secret().expect("read back");
        assert_eq!(a, b);
        let mode = std::fs::metadata(s.data_dir.join("jwt-secret"))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
