//! Filling the archive from upstream mirrors: the files a pool's target
//! needs that the archive lacks are looked up in each mirror's sync
//! databases (`$repo.db`, at the exact version), downloaded a few at a
//! time, resumed with a `Range` request when a connection drops, checked
//! against the sha256 the database records and only then stored, through
//! the same atomic path as uploads. What could not be had is listed in the
//! last fill's report (`fill.json` in the archive directory), shown by
//! `archive status` and `GET /api/archive`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::records;
use super::{Archive, disk};
use crate::store::{Store, StoreError, StoreResult, now_ms};

/// Downloads running at once in one fill.
pub const PARALLEL: usize = 4;
/// Tries of one file on one mirror without a byte of progress.
const TRIES: u32 = 3;
/// Largest detached signature kept.
const MAX_SIGNATURE: usize = 16 * 1024;
/// The report file in the archive directory.
const REPORT_FILE: &str = "fill.json";

/// What one fill did for a pool's target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FillReport {
    pub pool_id: String,
    pub pool_name: String,
    pub target_id: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// `None` while the fill runs (or when the process died during it).
    pub finished_at: Option<i64>,
    /// Files of the target the archive lacked (or held damaged).
    pub missing: usize,
    /// File names stored by this fill.
    pub stored: Vec<String>,
    pub failed: Vec<FillFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FillFailure {
    pub name: String,
    pub version: String,
    pub reason: String,
}

/// Where one package file can be had.
#[derive(Debug, Clone)]
struct Candidate {
    mirror: String,
    url: String,
    filename: String,
    sha256: String,
}

/// A pool by id or name: (id, name).
pub(super) fn find_pool(
    conn: &mut crate::store::DbConnection,
    pool: &str,
) -> StoreResult<(String, String)> {
    use crate::store::schema::pools;
    use diesel::prelude::*;
    pools::table
        .filter(pools::id.eq(pool).or(pools::name.eq(pool)))
        .select((pools::id, pools::name))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("pool"))
}

impl Archive {
    /// Starts a fill of `target_id` of `pool_id` in the background when
    /// any mirror is configured; never waits for it.
    pub fn fill_later(&self, store: &Store, pool_id: &str, target_id: &str) {
        if !self.mirrors.any() {
            return;
        }
        let (archive, store) = (self.clone(), store.clone());
        let (pool_id, target_id) = (pool_id.to_owned(), target_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = archive.fill(&store, &pool_id, Some(&target_id)).await {
                tracing::warn!(pool = %pool_id, target = %target_id, "archive fill failed: {e}");
            }
        });
    }

    /// Downloads from the pool's mirrors the files of its target
    /// (`target_id`, else the current one) that the archive lacks.
    /// `pool` is an id or a name.
    pub async fn fill(
        &self,
        store: &Store,
        pool: &str,
        target_id: Option<&str>,
    ) -> StoreResult<FillReport> {
        // One fill at a time: two would fetch the same files.
        let _one = self.fill_lock.lock().await;
        let (pool, target) = (pool.to_owned(), target_id.map(str::to_owned));
        let (pool_id, pool_name, target_id, missing) = store
            .run(move |conn| {
                let (id, name) = find_pool(conn, &pool)?;
                let (target_id, t) =
                    records::pool_target(conn, &id, target.as_deref().unwrap_or("current"))?;
                let missing: Vec<(String, String)> = records::files_of(conn, &t)?
                    .into_iter()
                    .filter(|(_, _, row)| row.as_ref().is_none_or(|r| r.damaged_at.is_some()))
                    .map(|(n, v, _)| (n, v))
                    .collect();
                Ok((id, name, target_id, missing))
            })
            .await?;
        let mut report = FillReport {
            pool_id,
            pool_name,
            target_id,
            started_at: now_ms(),
            missing: missing.len(),
            ..FillReport::default()
        };
        if missing.is_empty() {
            report.finished_at = Some(now_ms());
            self.save_report(&report);
            return Ok(report);
        }
        self.save_report(&report);
        let mirrors = self.mirrors.for_pool(&report.pool_name);
        let client = http_client()?;
        let (candidates, db_errors) = self.candidates(&client, &mirrors, &missing).await;
        let jobs = missing.into_iter().map(|(name, version)| {
            let found = candidates
                .get(&(name.clone(), version.clone()))
                .cloned()
                .unwrap_or_default();
            let (client, store) = (client.clone(), store.clone());
            let db_errors = &db_errors;
            let mirrors = &mirrors;
            async move {
                if found.is_empty() {
                    let mut reason = if mirrors.is_empty() {
                        "no mirror is configured for this pool".to_owned()
                    } else {
                        "no mirror's database has this version".to_owned()
                    };
                    if !db_errors.is_empty() {
                        reason.push_str(&format!(" ({})", db_errors.join("; ")));
                    }
                    return (name, version, Err(reason));
                }
                let mut errors = Vec::new();
                for c in &found {
                    match self.fetch(&client, &store, &name, &version, c).await {
                        Ok(stored) => return (name, version, Ok(stored)),
                        Err(e) => errors.push(format!("{}: {e}", c.mirror)),
                    }
                }
                (name, version, Err(errors.join("; ")))
            }
        });
        let results: Vec<_> = futures_util::stream::iter(jobs)
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (name, version, result) in results {
            match result {
                Ok(filename) => report.stored.push(filename),
                Err(reason) => {
                    tracing::warn!(
                        pool = %report.pool_name,
                        "archive fill: {name} {version} not stored: {reason}"
                    );
                    report.failed.push(FillFailure {
                        name,
                        version,
                        reason,
                    });
                }
            }
        }
        report.stored.sort();
        report.failed.sort_by(|a, b| a.name.cmp(&b.name));
        report.finished_at = Some(now_ms());
        self.save_report(&report);
        Ok(report)
    }

    /// Reads every mirror's sync databases; for each missing (name,
    /// version), the mirrors that have it, in mirror order. Also returns
    /// the databases that could not be read.
    async fn candidates(
        &self,
        client: &reqwest::Client,
        mirrors: &[String],
        missing: &[(String, String)],
    ) -> (HashMap<(String, String), Vec<Candidate>>, Vec<String>) {
        let wanted: std::collections::HashSet<&(String, String)> = missing.iter().collect();
        let mut out: HashMap<(String, String), Vec<Candidate>> = HashMap::new();
        let mut errors = Vec::new();
        for mirror in mirrors {
            for repo in &self.mirrors.repos {
                let base = mirror
                    .replace("$repo", repo)
                    .replace("$arch", &self.mirrors.arch);
                let base = base.trim_end_matches('/');
                let db_url = format!("{base}/{repo}.db");
                let bytes = match get_all(client, &db_url).await {
                    Ok(Some(b)) => b,
                    // A mirror need not carry every repository.
                    Ok(None) => continue,
                    Err(e) => {
                        errors.push(format!("{db_url}: {e}"));
                        continue;
                    }
                };
                let entries = match tokio::task::spawn_blocking(move || {
                    pacsync_core::syncdb::parse_sync_db(&bytes)
                })
                .await
                {
                    Ok(Ok(e)) => e,
                    Ok(Err(e)) => {
                        errors.push(format!("{db_url}: not a sync database: {e}"));
                        continue;
                    }
                    Err(e) => {
                        errors.push(format!("{db_url}: {e}"));
                        continue;
                    }
                };
                for e in entries {
                    let key = (e.name.clone(), e.version.as_str().to_owned());
                    let Some(sha256) = e.sha256.filter(|s| disk::is_sha256(s)) else {
                        continue;
                    };
                    if !wanted.contains(&key) || e.filename.contains('/') {
                        continue;
                    }
                    out.entry(key).or_default().push(Candidate {
                        mirror: mirror.clone(),
                        url: format!("{base}/{}", e.filename),
                        filename: e.filename,
                        sha256,
                    });
                }
            }
        }
        (out, errors)
    }

    /// Downloads one file, checks its hash, stores and records it;
    /// returns its file name.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        store: &Store,
        name: &str,
        version: &str,
        c: &Candidate,
    ) -> Result<String, String> {
        let part = download(&self.disk, client, &c.url).await?;
        let actual = part.sha256();
        if actual != c.sha256 {
            return Err(format!(
                "{} has sha256 {actual}, the mirror's database says {}; nothing was stored",
                c.filename, c.sha256
            ));
        }
        let signature = match get_all(client, &format!("{}.sig", c.url)).await {
            Ok(Some(sig)) if !sig.is_empty() && sig.len() <= MAX_SIGNATURE => Some(sig),
            _ => None,
        };
        let (archive, store) = (self.clone(), store.clone());
        let (claimed, sha, source) = (
            (name.to_owned(), version.to_owned()),
            c.sha256.clone(),
            format!("mirror:{}", c.mirror),
        );
        let done = tokio::task::spawn_blocking(move || {
            archive.record(
                &store,
                part,
                Some((&claimed.0, &claimed.1)),
                Some(&sha),
                signature,
                &source,
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(done.filename)
    }

    fn report_path(&self) -> PathBuf {
        self.disk.root().join(REPORT_FILE)
    }

    /// The last fill of every pool.
    pub fn fill_reports(&self) -> Vec<FillReport> {
        read_reports(&self.report_path()).into_values().collect()
    }

    /// Replaces the pool's report in `fill.json` (written aside, then
    /// renamed).
    fn save_report(&self, report: &FillReport) {
        let path = self.report_path();
        let mut all = read_reports(&path);
        all.insert(report.pool_id.clone(), report.clone());
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&all)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}

fn read_reports(path: &Path) -> BTreeMap<String, FillReport> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn http_client() -> StoreResult<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("pacsync-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StoreError::Other(e.into()))
}

/// A whole small file (a database, a signature); `None` when the mirror
/// does not have it.
async fn get_all(client: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return match tokio::fs::read(path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
    }
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    Ok(Some(
        resp.bytes().await.map_err(|e| e.to_string())?.to_vec(),
    ))
}

/// Downloads `url` into a new temporary file of the archive. A dropped
/// connection is resumed with `Range: bytes=N-` where it stopped; a mirror
/// that answers a range with the whole file starts the file over.
async fn download(
    disk: &disk::PackageDisk,
    client: &reqwest::Client,
    url: &str,
) -> Result<disk::Ingest, String> {
    let show = |e: disk::DiskError| e.to_string();
    let mut part = disk.begin().map_err(show)?;
    if let Some(path) = url.strip_prefix("file://") {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            use tokio::io::AsyncReadExt as _;
            let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(part);
            }
            part.write(&buf[..n]).map_err(show)?;
        }
    }
    let mut tries = 0;
    let mut last_error = String::new();
    while tries < TRIES {
        tries += 1;
        let from = part.written();
        let mut req = client.get(url);
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                continue;
            }
        };
        match resp.status() {
            reqwest::StatusCode::PARTIAL_CONTENT if from > 0 => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(from) {
                    return Err(format!(
                        "the mirror resumed at {start:?}, not at byte {from}"
                    ));
                }
            }
            s if s.is_success() => {
                if from > 0 {
                    // The whole file again: start over.
                    part = disk.begin().map_err(show)?;
                }
            }
            s => return Err(format!("HTTP {s}")),
        }
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    part.write(&bytes).map_err(show)?;
                    tries = 0;
                }
                Ok(None) => return Ok(part),
                Err(e) => {
                    last_error = format!("connection lost after {} bytes: {e}", part.written());
                    break;
                }
            }
        }
    }
    Err(last_error)
}
