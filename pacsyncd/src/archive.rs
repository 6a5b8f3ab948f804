//! The server's package archive from the machine's side: the last source
//! of a sync's files (exact version, hash-checked before pacman sees it),
//! and where set-latest leaves the files the server lacks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::executor;
use crate::machine::MachineSnapshot;
use crate::server::{ServerClient, ServerError, decode};

/// Package files can be large; the client's default timeout is for API
/// calls.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One package of the pool's current target as the archive has it.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchivedFile {
    pub name: String,
    pub version: String,
    pub filename: Option<String>,
    pub sha256: Option<String>,
    #[serde(default)]
    pub damaged: bool,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Listing {
    packages: Vec<ArchivedFile>,
}

/// What the archive gave for a sync.
#[derive(Debug, Default)]
pub struct Fetched {
    /// `(name, version)` → downloaded, checked file.
    pub files: HashMap<(String, String), String>,
    /// `(name, version)` → why the archive could not give it.
    pub problems: HashMap<(String, String), String>,
}

async fn listing(client: &ServerClient) -> Result<Vec<ArchivedFile>, ServerError> {
    let id = client.endpoint_id().await;
    let resp = client
        .send_with(Method::GET, &format!("/api/endpoints/{id}/archive"), |r| r)
        .await?;
    Ok(decode::<Listing>(resp).await?.packages)
}

async fn lookup(
    client: &ServerClient,
    wanted: &[(String, String)],
) -> Result<Vec<ArchivedFile>, ServerError> {
    let body = serde_json::json!({
        "packages": wanted
            .iter()
            .map(|(name, version)| serde_json::json!({ "name": name, "version": version }))
            .collect::<Vec<_>>(),
    });
    let resp = client
        .send_with(Method::POST, "/api/archive/lookup", |r| r.json(&body))
        .await?;
    Ok(decode::<Listing>(resp).await?.packages)
}

/// Downloads every `wanted` file the archive has into `dir`, each checked
/// against the sha256 the server recorded; a file that does not match is
/// deleted and named in the problems, never handed to pacman.
pub async fn fetch(client: &ServerClient, wanted: &[(String, String)], dir: &Path) -> Fetched {
    let mut out = Fetched::default();
    if wanted.is_empty() {
        return out;
    }
    let files = match lookup(client, wanted).await {
        Ok(f) => f,
        Err(e) => {
            for key in wanted {
                out.problems
                    .insert(key.clone(), format!("server archive unavailable: {e}"));
            }
            return out;
        }
    };
    let by_key: HashMap<(String, String), ArchivedFile> = files
        .into_iter()
        .map(|f| ((f.name.clone(), f.version.clone()), f))
        .collect();
    for key in wanted {
        let problem = match by_key.get(key) {
            None => "not in the server's archive".to_owned(),
            Some(ArchivedFile {
                url: Some(url),
                sha256: Some(sha256),
                filename: Some(filename),
                ..
            }) => match download(client, url, sha256, &dir.join(filename)).await {
                Ok(path) => {
                    out.files.insert(key.clone(), path.display().to_string());
                    continue;
                }
                Err(e) => e,
            },
            Some(_) => "not in the server's archive".to_owned(),
        };
        out.problems.insert(key.clone(), problem);
    }
    out
}

/// Fetches `url` into `dest` by way of a temporary file that becomes
/// `dest` only once its sha256 is `sha256`.
async fn download(
    client: &ServerClient,
    url: &str,
    sha256: &str,
    dest: &Path,
) -> Result<PathBuf, String> {
    let resp = client
        .send_with(Method::GET, url, |r| r.timeout(TRANSFER_TIMEOUT))
        .await
        .map_err(|e| format!("server archive: {e}"))?;
    if !resp.status().is_success() {
        let e = decode::<serde_json::Value>(resp).await.err();
        return Err(match e {
            Some(ServerError::Api { message, .. }) => format!("server archive refused: {message}"),
            Some(other) => format!("server archive: {other}"),
            None => "server archive refused the file".to_owned(),
        });
    }
    let part = dest.with_file_name(format!(".pacsync-{:016x}.part", rand::random::<u64>()));
    let result = write_checked(resp, &part, sha256).await;
    match result {
        Ok(()) => tokio::fs::rename(&part, dest)
            .await
            .map(|()| dest.to_owned())
            .map_err(|e| format!("keeping {}: {e}", dest.display())),
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(e)
        }
    }
}

async fn write_checked(
    mut resp: reqwest::Response,
    part: &Path,
    sha256: &str,
) -> Result<(), String> {
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| format!("creating {}: {e}", part.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("downloading from the server archive: {e}"))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", part.display()))?;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("writing {}: {e}", part.display()))?;
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(format!(
            "the server sent content with sha256 {actual}, not the recorded {sha256}"
        ));
    }
    Ok(())
}

/// What set-latest did for the archive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub uploaded: Vec<String>,
    /// Files the server lacks that this machine does not have either.
    pub unavailable: Vec<String>,
}

/// Uploads, from the pacman cache, every file of the pool's (new) target
/// that the server's archive lacks. The sync database's sha256 goes along
/// when a repository knows the package, and the server checks it and the
/// file's own `.PKGINFO`.
pub async fn upload_missing(
    client: &ServerClient,
    machine: &MachineSnapshot,
) -> Result<Uploaded, ServerError> {
    let files = listing(client).await?;
    let cached = executor::index_cache(&machine.paths.cache_dirs);
    let mut out = Uploaded::default();
    for f in files
        .into_iter()
        .filter(|f| f.sha256.is_none() || f.damaged)
    {
        let label = format!("{} {}", f.name, f.version);
        let Some(path) = cached.get(&(f.name.clone(), f.version.clone())) else {
            out.unavailable.push(label);
            continue;
        };
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("reading {}: {e}", path.display());
                out.unavailable.push(label);
                continue;
            }
        };
        let known = machine.repos.iter().find_map(|r| {
            let e = r.entries.get(&f.name)?;
            (e.version.as_str() == f.version).then(|| e.sha256.clone())?
        });
        let mut query = vec![("name", f.name.clone()), ("version", f.version.clone())];
        if let Some(s) = known {
            query.push(("sha256", s));
        }
        let resp = client
            .send_with(Method::PUT, "/api/archive/packages", |r| {
                r.query(&query)
                    .timeout(TRANSFER_TIMEOUT)
                    .body(bytes.clone())
            })
            .await?;
        #[derive(Deserialize)]
        struct Stored {
            sha256: String,
        }
        let stored: Stored = decode(resp).await?;
        let mut sig = path.clone().into_os_string();
        sig.push(".sig");
        if let Ok(sig) = tokio::fs::read(&sig).await {
            let resp = client
                .send_with(
                    Method::PUT,
                    &format!("/api/archive/packages/{}/signature", stored.sha256),
                    |r| r.body(sig.clone()),
                )
                .await?;
            decode::<serde_json::Value>(resp).await?;
        }
        out.uploaded.push(label);
    }
    Ok(out)
}
