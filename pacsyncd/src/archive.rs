//! The server's package archive from the machine's side: the last source
//! of a sync's files (exact version, hash-checked before pacman sees it),
//! and where set-latest leaves the files the server lacks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

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

/// Breaks in a row (a transfer that stops, a resumption that fails or gets
/// a 5xx) that bring the file no further than it ever got, after which a
/// download is given up.
const TRIES_WITHOUT_PROGRESS: u32 = 3;

/// The pause before a resumption, times the breaks in a row so far.
const RESUME_PAUSE: Duration = Duration::from_millis(200);

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
        return Err(refusal(resp).await);
    }
    let part = dest.with_file_name(format!(".pacsync-{:016x}.part", rand::random::<u64>()));
    let result = write_checked(client, url, resp, &part, sha256).await;
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

/// Why the server did not give a file.
async fn refusal(resp: reqwest::Response) -> String {
    match decode::<serde_json::Value>(resp).await.err() {
        Some(ServerError::Api { message, .. }) => format!("server archive refused: {message}"),
        Some(other) => format!("server archive: {other}"),
        None => "server archive refused the file".to_owned(),
    }
}

/// Writes the file `resp` brings to `part` and checks its sha256. A
/// transfer that breaks is resumed where it stopped (`Range: bytes=N-`;
/// the server serves ranges of its files) until
/// [`TRIES_WITHOUT_PROGRESS`] breaks in a row bring it no further; a server
/// that answers a resumption with the whole file has it written from the
/// start, and a 416 once every byte had arrived leaves the hash to decide.
async fn write_checked(
    client: &ServerClient,
    url: &str,
    mut resp: reqwest::Response,
    part: &Path,
    sha256: &str,
) -> Result<(), String> {
    let writing = |e: std::io::Error| format!("writing {}: {e}", part.display());
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| format!("creating {}: {e}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut have: u64 = 0;
    // The most of the file ever received: progress is passing it, not
    // receiving again what a restart from the start threw away.
    let mut best: u64 = 0;
    let mut fruitless = 0;
    'transfer: loop {
        let broke = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    hasher.update(&chunk);
                    file.write_all(&chunk).await.map_err(writing)?;
                    have += chunk.len() as u64;
                }
                Ok(None) => break None,
                Err(e) => break Some(format!("downloading from the server archive: {e}")),
            }
        };
        let Some(mut error) = broke else { break };
        if have > best {
            best = have;
            fruitless = 1;
        } else {
            fruitless += 1;
        }
        resp = loop {
            if fruitless >= TRIES_WITHOUT_PROGRESS {
                return Err(error);
            }
            // A moment for a server that is restarting, longer each time.
            tokio::time::sleep(RESUME_PAUSE * fruitless).await;
            let range = format!("bytes={have}-");
            let resumed = client
                .send_with(Method::GET, url, |r| {
                    r.timeout(TRANSFER_TIMEOUT)
                        .header(reqwest::header::RANGE, &range)
                })
                .await;
            match resumed {
                Ok(r) if r.status() == reqwest::StatusCode::PARTIAL_CONTENT => {
                    let from = r
                        .headers()
                        .get(reqwest::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(range_start);
                    if from != Some(have) {
                        return Err(format!(
                            "the server resumed the file elsewhere than at byte {have}"
                        ));
                    }
                    break r;
                }
                Ok(r) if r.status() == reqwest::StatusCode::OK => {
                    // The whole file again: from the start.
                    file.set_len(0).await.map_err(writing)?;
                    file.seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(writing)?;
                    hasher = Sha256::new();
                    have = 0;
                    break r;
                }
                // Every byte had arrived: the hash says whether it is whole.
                Ok(r) if r.status() == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 => {
                    break 'transfer;
                }
                // A proxy or a server in trouble: worth another try.
                Ok(r) if r.status().is_server_error() => {
                    fruitless += 1;
                    error = refusal(r).await;
                }
                Ok(r) => return Err(refusal(r).await),
                Err(e) => {
                    fruitless += 1;
                    error = format!("server archive: {e}");
                }
            }
        };
    }
    // A write that failed in the background shows at the flush, not at
    // `sync_all`.
    file.flush().await.map_err(writing)?;
    file.sync_all().await.map_err(writing)?;
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(format!(
            "the server sent content with sha256 {actual}, not the recorded {sha256}"
        ));
    }
    Ok(())
}

/// The first byte a `Content-Range: bytes FIRST-LAST/SIZE` gives.
fn range_start(v: &str) -> Option<u64> {
    let (first, _) = v.trim().strip_prefix("bytes ")?.split_once('-')?;
    first.trim().parse().ok()
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::store::Credentials;

    /// The bytes a fake server answers the `n`th connection with, given
    /// the first byte its request's `Range` asks for.
    type Answer = Box<dyn Fn(usize, Option<u64>) -> Vec<u8> + Send + Sync>;

    /// A server on 127.0.0.1 that answers each connection with `answer`,
    /// closes it, and keeps what each request's `Range` asked for.
    async fn fake_server(answer: Answer) -> (ServerClient, Arc<Mutex<Vec<Option<u64>>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match sock.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let range = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse().ok());
                log.lock().expect("log").push(range);
                let _ = sock.write_all(&answer(n, range)).await;
                let _ = sock.shutdown().await;
                n += 1;
            }
        });
        let creds = Credentials {
            server_url: url,
            endpoint_id: "e".into(),
            machine_name: "m".into(),
            access_token: "t".into(),
            refresh_token: "r".into(),
        };
        (ServerClient::new(creds, |_| {}), asked)
    }

    fn content() -> Vec<u8> {
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect()
    }

    /// A 200 for all of `c` that sends `send` bytes of it.
    fn whole(c: &[u8], send: usize) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            c.len()
        )
        .into_bytes();
        r.extend_from_slice(&c[..send]);
        r
    }

    /// A 206 for `c` from byte `from` that sends `send` bytes of it.
    fn part(c: &[u8], from: u64, send: usize) -> Vec<u8> {
        let from = from as usize;
        let mut r = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            c.len() - 1,
            c.len(),
            c.len() - from
        )
        .into_bytes();
        r.extend_from_slice(&c[from..from + send]);
        r
    }

    fn sha(c: &[u8]) -> String {
        hex::encode(Sha256::digest(c))
    }

    /// What [`download`] of [`content`] from a fake server came to.
    struct Downloaded {
        got: Result<PathBuf, String>,
        dest: PathBuf,
        content: Vec<u8>,
        /// What each request's `Range` asked for.
        asked: Vec<Option<u64>>,
        /// Holds `dest`.
        dir: tempfile::TempDir,
    }

    /// Downloads [`content`] from a server that answers the `n`th
    /// connection, whose `Range` asks from byte `from`, with
    /// `answer(content, n, from)`.
    async fn download_from(
        answer: impl Fn(&[u8], usize, Option<u64>) -> Vec<u8> + Send + Sync + 'static,
    ) -> Downloaded {
        let content = content();
        let served = content.clone();
        let (client, asked) = fake_server(Box::new(move |n, from| answer(&served, n, from))).await;
        let dir = tempfile::tempdir().expect("dir");
        let dest = dir.path().join("a-1-1-x86_64.pkg.tar.zst");
        let got = download(&client, "/f", &sha(&content), &dest).await;
        let asked = asked.lock().expect("log").clone();
        Downloaded {
            got,
            dest,
            content,
            asked,
            dir,
        }
    }

    impl Downloaded {
        /// The download succeeded with the whole content.
        fn assert_whole(&self) {
            assert_eq!(self.got.as_deref(), Ok(self.dest.as_path()));
            assert_eq!(std::fs::read(&self.dest).expect("the file"), self.content);
        }
    }

    #[tokio::test]
    async fn a_broken_transfer_is_resumed_where_it_stopped() {
        let d = download_from(|c, n, from| match (n, from) {
            (0, None) => whole(c, 70_000),
            (1, Some(from)) => part(c, from, 50_000),
            (_, Some(from)) => part(c, from, c.len() - from as usize),
            _ => Vec::new(),
        })
        .await;
        d.assert_whole();
        assert_eq!(d.asked, [None, Some(70_000), Some(120_000)]);
    }

    #[tokio::test]
    async fn a_resumption_answered_with_the_whole_file_starts_it_over() {
        let d = download_from(|c, n, _| match n {
            0 => whole(c, 1_000),
            _ => whole(c, c.len()),
        })
        .await;
        d.assert_whole();
        assert_eq!(d.asked, [None, Some(1_000)]);
    }

    #[tokio::test]
    async fn breaks_that_bring_nothing_give_the_download_up_and_leave_nothing() {
        let d = download_from(|c, n, from| match (n, from) {
            (0, _) => whole(c, 1_000),
            (_, Some(from)) => part(c, from, 0),
            _ => Vec::new(),
        })
        .await;
        let Err(e) = &d.got else {
            panic!("a file that never arrives is not downloaded: {:?}", d.got)
        };
        assert!(e.contains("downloading from the server archive"), "{e}");
        assert_eq!(
            d.asked,
            [None, Some(1_000), Some(1_000)],
            "one break after progress, then two that brought nothing"
        );
        let left: Vec<_> = std::fs::read_dir(d.dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "nothing left behind: {left:?}");
    }

    #[tokio::test]
    async fn a_server_that_ignores_ranges_and_keeps_breaking_is_given_up() {
        // Every answer is the whole file, broken at the same place.
        let d = download_from(|c, _, _| whole(c, 5_000)).await;
        assert!(d.got.is_err(), "{:?}", d.got);
        assert_eq!(
            d.asked.len(),
            3,
            "the first transfer, then two restarts that got no further"
        );
        assert!(!d.dest.exists());
    }

    #[tokio::test]
    async fn a_transfer_that_broke_after_the_last_byte_is_kept_when_whole() {
        let d = download_from(|c, n, _| match n {
            // All of it, but the answer claims one byte more.
            0 => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    c.len() + 1
                )
                .into_bytes();
                r.extend_from_slice(c);
                r
            }
            _ => format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                c.len()
            )
            .into_bytes(),
        })
        .await;
        d.assert_whole();
        assert_eq!(d.asked, [None, Some(d.content.len() as u64)]);
    }

    #[tokio::test]
    async fn a_resumption_elsewhere_is_refused() {
        let d = download_from(|c, n, _| match n {
            0 => whole(c, 1_000),
            _ => part(c, 500, c.len() - 500),
        })
        .await;
        assert_eq!(
            d.got,
            Err("the server resumed the file elsewhere than at byte 1000".to_owned())
        );
        assert!(!d.dest.exists());
    }
}
