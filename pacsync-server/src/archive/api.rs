//! The archive's routes: machines upload package files, see which files
//! their pool's target has, and everyone with a pool's id reads its
//! snapshot repositories at `/repo/{pool}/{target}/{repo}/os/{arch}/`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use pacsync_core::state::TargetState;
use serde::Deserialize;
use serde_json::{Value, json};

use super::records::{self, ArchiveFileRow};
use super::{disk, repodb};
use crate::api::{ApiError, ApiResult, AppState, Json, Path, Query, check_id};
use crate::auth::{Principal, Role};
use crate::store::{StoreError, endpoints};

/// Largest detached signature taken (real ones are a few hundred bytes).
const MAX_SIGNATURE: usize = 16 * 1024;

/// The name the snapshot repository gets in listings; any `{repo}` in a
/// URL serves the same snapshot, so a `[pacsync]` section works as well as
/// one named after the pool.
pub const DEFAULT_REPO: &str = "pacsync";

fn archive(app: &AppState) -> ApiResult<super::Archive> {
    Ok(app.archive.clone())
}

/// Machines (for their pool) and operators may add files.
fn may_upload(who: &Principal) -> ApiResult<String> {
    match who {
        Principal::Machine { endpoint_id } => Ok(format!("upload:{endpoint_id}")),
        other => {
            other.require(Role::Operator)?;
            Ok(format!("upload:{}", other.actor()))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The package the uploader says this is; checked against `.PKGINFO`.
    pub name: Option<String>,
    pub version: Option<String>,
    /// The sha256 the uploader knows (from its sync database); checked.
    pub sha256: Option<String>,
}

/// `PUT /api/archive/packages`: the body is a package file.
pub async fn upload(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let source = may_upload(&who)?;
    let archive = archive(&app)?;
    let mut part = archive.disk.begin().map_err(super::disk_error)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("upload_failed", format!("reading the upload: {e}"))
        })?;
        // Small synchronous writes: the page cache takes them; the one
        // fsync happens on the blocking pool below.
        part.write(&chunk).map_err(super::disk_error)?;
    }
    let store = app.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let claimed = q.name.as_deref().zip(q.version.as_deref());
        archive.record(&store, part, claimed, q.sha256.as_deref(), None, &source)
    })
    .await
    .map_err(ApiError::internal)??;
    let status = if done.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(done))))
}

/// `PUT /api/archive/packages/{sha256}/signature`: the file's detached
/// signature (`.sig`).
pub async fn upload_signature(
    State(app): State<AppState>,
    who: Principal,
    Path(sha256): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    may_upload(&who)?;
    if !disk::is_sha256(&sha256) {
        return Err(ApiError::not_found("archive file"));
    }
    if body.is_empty() || body.len() > MAX_SIGNATURE {
        return Err(ApiError::bad_request(
            "invalid_signature",
            format!("a signature is 1 to {MAX_SIGNATURE} bytes"),
        ));
    }
    app.store
        .write(move |conn| {
            let mut row =
                records::get(conn, &sha256)?.ok_or(StoreError::NotFound("archive file"))?;
            row.signature = Some(body.to_vec());
            records::insert(conn, &row).map(drop)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/endpoints/{id}/archive`: every file of the machine's pool's
/// current target, with where to get it.
pub async fn endpoint_files(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let out = app
        .store
        .run(move |conn| {
            let ep = endpoints::get(conn, &id)?;
            let pool = ep
                .pool_id
                .ok_or_else(|| StoreError::conflict("unassigned", "the machine is in no pool"))?;
            let (target_id, target) = records::pool_target(conn, &pool, "current")?;
            let files = records::files_of(conn, &target)?;
            let packages: Vec<Value> = files
                .into_iter()
                .map(|(name, version, row)| file_json(&name, &version, row.as_ref()))
                .collect();
            Ok(json!({
                "pool_id": pool,
                "target_id": target_id,
                "repository": format!("/repo/{pool}/{target_id}/{DEFAULT_REPO}/os/$arch"),
                "current_repository": format!("/repo/{pool}/current/{DEFAULT_REPO}/os/$arch"),
                "packages": packages,
            }))
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupBody {
    pub packages: Vec<Wanted>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wanted {
    pub name: String,
    pub version: String,
}

/// `POST /api/archive/lookup`: the archived file of each (name, version)
/// asked for, whichever target brought it — what a sync or a revert
/// fetches when no repository or cache has a version.
pub async fn lookup(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<LookupBody>,
) -> ApiResult<Json<Value>> {
    if !matches!(who, Principal::Machine { .. }) {
        who.require(Role::Viewer)?;
    }
    let out = app
        .store
        .run(move |conn| {
            let wanted: Vec<(String, String)> = body
                .packages
                .into_iter()
                .map(|w| (w.name, w.version))
                .collect();
            let found = records::files_for(conn, &wanted)?;
            Ok(found
                .into_iter()
                .map(|(name, version, row)| file_json(&name, &version, row.as_ref()))
                .collect::<Vec<Value>>())
        })
        .await?;
    Ok(Json(json!({ "packages": out })))
}

fn file_json(name: &str, version: &str, row: Option<&ArchiveFileRow>) -> Value {
    match row {
        Some(r) => json!({
            "name": name,
            "version": version,
            "filename": r.filename,
            "sha256": r.sha256,
            "size": r.size,
            "damaged": r.damaged_at.is_some(),
            "url": format!("/api/archive/files/{}", r.sha256),
        }),
        None => json!({ "name": name, "version": version, "filename": null,
            "sha256": null, "size": null, "damaged": false, "url": null }),
    }
}

/// `GET /api/archive/files/{sha256}`: one stored file, re-hashed first.
pub async fn file(
    State(app): State<AppState>,
    who: Principal,
    Path(sha256): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !matches!(who, Principal::Machine { .. }) {
        who.require(Role::Viewer)?;
    }
    if !disk::is_sha256(&sha256) {
        return Err(ApiError::not_found("archive file"));
    }
    let archive = archive(&app)?;
    let row = app
        .store
        .run(move |conn| records::get(conn, &sha256))
        .await?
        .ok_or_else(|| ApiError::not_found("archive file"))?;
    serve_verified(&app, &archive, row, &method, &headers).await
}

/// `GET /api/archive`: size, limit and damage.
pub async fn status(State(app): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let archive = archive(&app)?;
    let store = app.store.clone();
    let s = tokio::task::spawn_blocking(move || archive.status(&store))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!(s)))
}

/// `POST /api/archive/verify`: re-hash every file.
pub async fn verify(State(app): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let archive = archive(&app)?;
    let store = app.store.clone();
    let r = tokio::task::spawn_blocking(move || archive.verify(&store))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!(r)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillBody {
    /// A pool's id or name.
    pub pool: String,
    /// A target id of the pool; its current target when absent.
    pub target: Option<String>,
}

/// `POST /api/archive/fill`: fetch from the pool's mirrors, in the
/// background, the files of its target the archive lacks; 202 at once,
/// the outcome in `GET /api/archive` (`fills`).
pub async fn fill(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<FillBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::Admin)?;
    let archive = archive(&app)?;
    let (pool_id, pool_name, target_id) = app
        .store
        .run(move |conn| {
            let (id, name) = super::fill::find_pool(conn, &body.pool)?;
            let target = body.target.as_deref().unwrap_or("current");
            let (target_id, _) = records::pool_target(conn, &id, target)?;
            Ok((id, name, target_id))
        })
        .await?;
    if archive.mirrors.for_pool(&pool_name).is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_mirrors",
            format!(
                "no mirror is configured for pool {pool_name:?} (ARCHIVE_MIRRORS or [archive.pool_mirrors])"
            ),
        ));
    }
    archive.fill_later(&app.store, &pool_id, &target_id);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "pool_id": pool_id, "target_id": target_id })),
    ))
}

/// `POST /api/archive/gc`: remove what nothing references.
pub async fn gc(State(app): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let archive = archive(&app)?;
    let store = app.store.clone();
    let r = tokio::task::spawn_blocking(move || archive.gc(&store))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!(r)))
}

#[derive(Debug, Deserialize)]
pub struct RepoPath {
    pool: String,
    target: String,
    repo: String,
    arch: String,
    file: String,
}

/// `GET /repo/{pool}/{target}/{repo}/os/{arch}/{file}`: the snapshot
/// repository of a target (`current`: the pool's current one) — its
/// database, its package files and their signatures. A file whose content
/// no longer has its recorded hash is refused, never served.
pub async fn repo_file(
    State(app): State<AppState>,
    Path(p): Path<RepoPath>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_id("pool", &p.pool)?;
    if p.target != "current" {
        check_id("target", &p.target)?;
    }
    let archive = archive(&app)?;
    let (pool, target) = (p.pool.clone(), p.target.clone());
    let db_names = [format!("{}.db", p.repo), format!("{}.db.tar.gz", p.repo)];
    let is_db = db_names.contains(&p.file);
    let wanted = p.file.strip_suffix(".sig").unwrap_or(&p.file).to_owned();
    let files: Vec<ArchiveFileRow> = app
        .store
        .run(move |conn| {
            let (_, t): (String, Arc<TargetState>) = records::pool_target(conn, &pool, &target)?;
            // One package file: its row alone, found by the name and
            // version its file name gives, when the target has them.
            if !is_db && let Some(key) = target_key(&t, &wanted) {
                let rows = records::files_for(conn, &[key])?;
                let hit: Vec<ArchiveFileRow> = rows
                    .into_iter()
                    .filter_map(|(_, _, row)| row)
                    .filter(|r| r.filename == wanted)
                    .collect();
                if !hit.is_empty() {
                    return Ok(hit);
                }
            }
            Ok(records::files_of(conn, &t)?
                .into_iter()
                .filter_map(|(_, _, row)| row)
                .collect())
        })
        .await?;
    if is_db {
        let arch = p.arch.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            let listed: Vec<repodb::DbPackage<'_>> = files
                .iter()
                .filter(|r| r.damaged_at.is_none() && (r.arch == arch || r.arch == "any"))
                .map(|r| repodb::DbPackage {
                    filename: &r.filename,
                    sha256: &r.sha256,
                    size: u64::try_from(r.size).unwrap_or(0),
                    pkginfo: &r.pkginfo,
                })
                .collect();
            repodb::write(&listed)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response());
    }
    if let Some(pkg) = p.file.strip_suffix(".sig") {
        let sig = files
            .into_iter()
            .find(|r| r.filename == pkg)
            .and_then(|r| r.signature)
            .ok_or_else(|| ApiError::not_found("signature"))?;
        return Ok(([(header::CONTENT_TYPE, "application/pgp-signature")], sig).into_response());
    }
    let row = files
        .into_iter()
        .find(|r| r.filename == p.file)
        .ok_or_else(|| ApiError::not_found("package file"))?;
    serve_verified(&app, &archive, row, &method, &headers).await
}

/// The (name, version) of `target` that a package file name
/// (`NAME-PKGVER-PKGREL-ARCH.pkg.tar.*`) names, if any.
fn target_key(target: &TargetState, filename: &str) -> Option<(String, String)> {
    let stem = &filename[..filename.find(".pkg.tar")?];
    let mut dashes = stem.rmatch_indices('-').map(|(i, _)| i);
    let (_arch, _rel, ver) = (dashes.next()?, dashes.next()?, dashes.next()?);
    let name = &stem[..ver];
    let version = &stem[ver + 1..stem.rfind('-')?];
    let entry = target.get(name)?;
    (entry.version.as_str() == version).then(|| (name.to_owned(), version.to_owned()))
}

/// What a request's `Range` asks of a file of `size` bytes. One range of
/// bytes is served; anything else — several ranges, another unit, a range
/// that does not parse, an `If-Range` that is not the file's `ETag` — gets
/// the whole file, as HTTP allows. pacman (libcurl) resumes an interrupted
/// download with `Range: bytes=N-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Whole,
    /// Bytes `start..=end`.
    Part {
        start: u64,
        end: u64,
    },
    /// Nothing of the file (it starts past the end): 416.
    Unsatisfiable,
}

fn asked(headers: &HeaderMap, etag: &str, size: u64) -> Asked {
    let mut ranges = headers.get_all(header::RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        // None, or several lines: a list of ranges.
        return Asked::Whole;
    };
    let Ok(range) = range.to_str() else {
        return Asked::Whole;
    };
    if headers
        .get(header::IF_RANGE)
        .is_some_and(|v| v.as_bytes() != etag.as_bytes())
    {
        return Asked::Whole;
    }
    let range = range.trim();
    let Some((first, last)) = range
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &range[6..])
        .filter(|spec| !spec.contains(','))
        .and_then(|spec| spec.split_once('-'))
    else {
        return Asked::Whole;
    };
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // More digits than a u64 holds: past the end of any file.
        Some(s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    let last = match (last.is_empty(), number(last)) {
        (true, _) => None,
        (false, Some(n)) => Some(n),
        (false, None) => return Asked::Whole,
    };
    if first.is_empty() {
        // `-n`: the last n bytes (all of a file shorter than n; an empty
        // file has no part to give, so it is given whole).
        return match (last, size.checked_sub(1)) {
            (None, _) => Asked::Whole,
            (Some(0), _) => Asked::Unsatisfiable,
            (Some(_), None) => Asked::Whole,
            (Some(n), Some(max)) => Asked::Part {
                start: size.saturating_sub(n),
                end: max,
            },
        };
    }
    let Some(start) = number(first) else {
        return Asked::Whole;
    };
    if last.is_some_and(|l| l < start) {
        return Asked::Whole;
    }
    let Some(max) = size.checked_sub(1).filter(|max| start <= *max) else {
        return Asked::Unsatisfiable;
    };
    Asked::Part {
        start,
        end: last.map_or(max, |l| l.min(max)),
    }
}

/// Streams a stored file after re-hashing it, whole or the one range of
/// bytes asked for ([`asked`]); a damaged file is marked and refused with
/// `archive_damaged`.
async fn serve_verified(
    app: &AppState,
    archive: &super::Archive,
    row: ArchiveFileRow,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let disk = archive.disk.clone();
    let sha = row.sha256.clone();
    let checked = tokio::task::spawn_blocking(move || disk.check(&sha))
        .await
        .map_err(ApiError::internal)?;
    if let Err(e) = checked {
        let sha = row.sha256.clone();
        let now = crate::store::now_ms();
        app.store
            .write(move |conn| records::mark_damaged(conn, &sha, Some(now)))
            .await?;
        return Err(ApiError::from(super::disk_error(e)).with_details(json!({
            "filename": row.filename,
            "sha256": row.sha256,
        })));
    }
    // Only a sound file is served, whole or in part.
    let size = u64::try_from(row.size).unwrap_or(0);
    // Contents are named by their hash: it is the strongest of validators.
    let etag = format!("\"{}\"", row.sha256);
    // A range is for GET alone (a HEAD is answered as the whole file's).
    let range = if method == Method::GET {
        asked(headers, &etag, size)
    } else {
        Asked::Whole
    };
    let part = match range {
        Asked::Whole => None,
        Asked::Part { start, end } => Some((start, end)),
        Asked::Unsatisfiable => {
            let mut refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range asked for is past the file's {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refused.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(refused);
        }
    };
    let mut file = tokio::fs::File::open(archive.disk.path_of(&row.sha256))
        .await
        .map_err(ApiError::internal)?;
    let (status, start, len) = match part {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    if start > 0 {
        use tokio::io::AsyncSeekExt as _;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
    }
    let file = tokio::io::AsyncReadExt::take(file, len);
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::ETAG, etag),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    if let Some((start, end)) = part
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacsync_core::package::InstallReason;
    use pacsync_core::state::TargetEntry;

    fn range(range: &str, if_range: Option<&str>, size: u64) -> Asked {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).expect("header"));
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).expect("header"));
        }
        asked(&h, "\"abc\"", size)
    }

    #[test]
    fn one_range_of_bytes_is_served_and_anything_else_gets_the_whole_file() {
        use Asked::{Part, Unsatisfiable, Whole};
        assert_eq!(asked(&HeaderMap::new(), "\"abc\"", 10), Whole);
        // What pacman sends to resume, and the other forms of one range.
        assert_eq!(range("bytes=4-", None, 10), Part { start: 4, end: 9 });
        assert_eq!(range("bytes=0-0", None, 10), Part { start: 0, end: 0 });
        assert_eq!(range("bytes=2-5", None, 10), Part { start: 2, end: 5 });
        assert_eq!(range("bytes=2-500", None, 10), Part { start: 2, end: 9 });
        assert_eq!(range("bytes=-3", None, 10), Part { start: 7, end: 9 });
        assert_eq!(range("bytes=-30", None, 10), Part { start: 0, end: 9 });
        assert_eq!(range(" bytes= 9 - ", None, 10), Part { start: 9, end: 9 });
        // Past the end, or nothing at all: 416.
        assert_eq!(range("bytes=10-", None, 10), Unsatisfiable);
        assert_eq!(
            range("bytes=99999999999999999999999-", None, 10),
            Unsatisfiable
        );
        assert_eq!(range("bytes=-0", None, 10), Unsatisfiable);
        assert_eq!(range("bytes=0-", None, 0), Unsatisfiable);
        assert_eq!(range("bytes=-5", None, 0), Whole);
        assert_eq!(range("Bytes=4-", None, 10), Part { start: 4, end: 9 });
        let mut two = HeaderMap::new();
        two.append(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        two.append(header::RANGE, HeaderValue::from_static("bytes=4-5"));
        assert_eq!(asked(&two, "\"abc\"", 10), Whole, "two Range lines");
        // Not one range of bytes that parses: the whole file.
        for other in [
            "bytes=5-2",
            "bytes=1-2,4-5",
            "bytes=-",
            "bytes=a-",
            "bytes=1-b",
            "bytes=+1-",
            "bytes=1",
            "items=1-2",
            "",
        ] {
            assert_eq!(range(other, None, 10), Whole, "{other:?}");
        }
        // If-Range: the file's ETag or nothing.
        assert_eq!(
            range("bytes=4-", Some("\"abc\""), 10),
            Part { start: 4, end: 9 }
        );
        assert_eq!(range("bytes=4-", Some("\"abd\""), 10), Whole);
        assert_eq!(
            range("bytes=4-", Some("Wed, 21 Oct 2015 07:28:00 GMT"), 10),
            Whole
        );
    }

    #[test]
    fn a_file_name_gives_the_target_entry_it_names() {
        let target: TargetState = [("lib-foo-bar", "1:2.0.1-3"), ("x", "1-1")]
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_owned(),
                    TargetEntry {
                        version: v.into(),
                        reason: InstallReason::Explicit,
                    },
                )
            })
            .collect();
        assert_eq!(
            target_key(&target, "lib-foo-bar-1:2.0.1-3-x86_64.pkg.tar.zst"),
            Some(("lib-foo-bar".to_owned(), "1:2.0.1-3".to_owned()))
        );
        assert_eq!(
            target_key(&target, "x-1-1-any.pkg.tar.xz"),
            Some(("x".to_owned(), "1-1".to_owned()))
        );
        assert_eq!(target_key(&target, "x-2-1-any.pkg.tar.xz"), None);
        assert_eq!(target_key(&target, "pacsync.db"), None);
        assert_eq!(target_key(&target, "-.pkg.tar"), None);
    }
}
