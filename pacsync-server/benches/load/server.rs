//! The server process under load: started, measured (RSS, database
//! size, row counts) and killed with the generator.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::pg;

pub struct Server {
    pub child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
    _pg: Option<pg::Postgres>,
    pg_url: Option<String>,
    db_path: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const PASSWORD: &str = "benchmark password";
const SECRET: &str = "benchmark-secret-benchmark-secret-0123";

pub fn start(backend: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        "sqlite" => None,
        "postgres" => Some(pg::start().context("PostgreSQL binaries not found")?),
        other => bail!("unknown backend {other}"),
    };
    let pg_url = pg.as_ref().map(|p| p.url.clone());
    let command = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pacsync-server"));
        c.env_clear()
            .env("PACSYNC_DATA_DIR", dir.path())
            .env("JWT_SECRET_KEY", SECRET)
            .env("API_RATE_LIMIT", "0")
            .env("HTTP_PORT", "0")
            .env("LOG_LEVEL", "warn")
            .env("PACSYNC_ADMIN_PASSWORD", PASSWORD);
        // The allocator settings the Dockerfile and the systemd unit ship;
        // MIMALLOC_* / MALLOC_* in the generator's environment override them;
        // DATABASE_POOL_SIZE passes through too.
        c.env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
        for (k, v) in std::env::vars() {
            if k.starts_with("MIMALLOC_") || k.starts_with("MALLOC_") || k == "DATABASE_POOL_SIZE" {
                c.env(k, v);
            }
        }
        if let Some(u) = &pg_url {
            c.env("DATABASE_TYPE", "postgresql").env("DATABASE_URL", u);
        }
        c
    };
    let out = command().args(["admin", "create-user", "admin"]).output()?;
    if !out.status.success() {
        bail!("create-user: {}", String::from_utf8_lossy(&out.stderr));
    }
    // PACSYNC_LOAD_WRAPPER (e.g. "heaptrack") runs the server under a tool.
    let mut serve = match std::env::var("PACSYNC_LOAD_WRAPPER") {
        Ok(w) if !w.is_empty() => {
            let mut c = Command::new(w);
            c.arg(env!("CARGO_BIN_EXE_pacsync-server"));
            for (k, v) in command().get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            c
        }
        _ => command(),
    };
    let mut child = serve.arg("serve").stdout(Stdio::piped()).spawn()?;
    // The first line with an address (a wrapper may print its own first).
    let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && !line.contains("http://") {
        line.clear();
    }
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no listen address printed")?
        .to_owned();
    Ok(Server {
        child,
        base,
        db_path: dir.path().join("pacsync.db"),
        _dir: dir,
        _pg: pg,
        pg_url,
    })
}

impl Server {
    /// A field of `/proc/PID/status`, in KiB.
    fn status_kib(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub fn rss_kib(&self) -> (u64, u64) {
        (self.status_kib("VmRSS:"), self.status_kib("VmHWM:"))
    }
}

/// The resident size, split into anonymous memory (the heaps) and file
/// pages (the binary's code, SQLite's shared-memory index).
pub fn note_rss(server: &Server, after: &str) {
    let (rss, peak) = server.rss_kib();
    let (anon, file) = (server.status_kib("RssAnon:"), server.status_kib("RssFile:"));
    let shmem = server.status_kib("RssShmem:");
    eprintln!(
        "after {after}: server RSS {rss} KiB (peak {peak} KiB; anonymous {anon}, file {file}, shared {shmem})"
    );
}

pub async fn count_rows(server: &Server) -> anyhow::Result<Vec<(String, i64)>> {
    use diesel::prelude::*;
    let settings = pacsync_server::Settings::from_sources(None, |k| match k {
        "PACSYNC_DATA_DIR" => server
            .db_path
            .parent()
            .map(|p| p.to_string_lossy().into_owned()),
        "DATABASE_TYPE" => server.pg_url.as_ref().map(|_| "postgresql".to_owned()),
        "DATABASE_URL" => server.pg_url.clone(),
        "DATABASE_POOL_SIZE" => Some("1".into()),
        _ => None,
    })?;
    let store = pacsync_server::store::Store::open(&settings.database)?;
    let mut conn = store.blocking_conn()?;
    let mut out = Vec::new();
    for table in [
        "endpoints",
        "endpoint_states",
        "states",
        "operations",
        "audit_log",
        "refresh_tokens",
    ] {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result(&mut *conn)?;
        out.push((table.to_owned(), n.n));
    }
    Ok(out)
}

pub async fn db_size(server: &Server) -> anyhow::Result<u64> {
    if server.pg_url.is_none() {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", server.db_path.display());
            total += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        }
        return Ok(total);
    }
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let url = server.pg_url.clone().context("url")?;
    let mut c = diesel::PgConnection::establish(&url)?;
    let n: N =
        diesel::sql_query("SELECT pg_database_size(current_database()) AS n").get_result(&mut c)?;
    Ok(u64::try_from(n.n)?)
}
