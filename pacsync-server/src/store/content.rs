//! Content-addressed package states and target contents: each distinct
//! content is one row, keyed by its [`ContentHash`], stored as
//! zstd-compressed JSON. Most machines share a state, so 10,000 machines
//! cost little more than 100.

use diesel::prelude::*;
use pacsync_core::state::{PackageState, TargetState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};

use super::bases::{Base, Bases, Compressed};
use super::schema::{states, target_contents};
use super::{DbConnection, StoreError, StoreResult, bases, cache, now_ms, on_each_backend};
use std::sync::Arc;

/// zstd level 1, the fastest: at level 3 compressing was the largest
/// single cost of a state upload (about a sixth of the server's time), and
/// the stored states came out about as large at level 1.
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// One compression context per thread, kept: a level-3 context is a few
    /// MiB, and making one per report left glibc's heap (where zstd
    /// allocates) fragmented with them.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

pub(crate) fn compress<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    compress_json(&json)
}

pub(super) fn compress_json(json: &[u8]) -> StoreResult<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(c) => c,
            empty => {
                empty.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(anyhow::Error::from)?)
            }
        };
        Ok(compressor.compress(json).map_err(anyhow::Error::from)?)
    })
}

/// The JSON of a stored content: in one go into a buffer of the size its
/// frame gives (about three times as fast as streaming it out).
fn decompress_json(bytes: &[u8], what: &str) -> StoreResult<Vec<u8>> {
    let unreadable =
        |e: std::io::Error| StoreError::Other(anyhow::anyhow!("stored {what} unreadable: {e}"));
    match content_size(bytes) {
        Some(size) => zstd::bulk::decompress(bytes, size).map_err(unreadable),
        None => zstd::decode_all(bytes).map_err(unreadable),
    }
}

/// The size a zstd frame says its content has, unless absurd (a damaged
/// frame must not make us allocate gigabytes).
pub(super) fn content_size(bytes: &[u8]) -> Option<usize> {
    const MAX: u64 = 256 << 20;
    match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(n)) if n <= MAX => usize::try_from(n).ok(),
        _ => None,
    }
}

pub(crate) fn decompress<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    let json = decompress_json(bytes, what)?;
    serde_json::from_slice(&json)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("stored {what} unreadable: {e}")))
}

pub fn has_state(conn: &mut DbConnection, hash: &str) -> StoreResult<bool> {
    let n: i64 = states::table
        .filter(states::hash.eq(hash))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// A state ready to insert: compressed, with its hash.
#[derive(Debug)]
pub struct PreparedState {
    pub hash: String,
    package_count: i64,
    content: Vec<u8>,
    /// The state it is compressed against ([`super::bases`]).
    base: Option<String>,
    /// Stored alone, it may serve as a base once inserted.
    candidate: Option<Arc<Base>>,
    /// Set when its row went in (rather than finding the content there).
    inserted: Cell<bool>,
}

impl PreparedState {
    fn new(hash: String, state: &PackageState, compressed: Compressed) -> Self {
        PreparedState {
            hash,
            package_count: i64::try_from(state.len()).unwrap_or(i64::MAX),
            content: compressed.content,
            base: compressed.base,
            candidate: compressed.candidate,
            inserted: Cell::new(false),
        }
    }

    pub(super) fn package_count(&self) -> i64 {
        self.package_count
    }

    /// The compressed content, as stored.
    pub(super) fn content(&self) -> &[u8] {
        &self.content
    }

    /// The state the content is compressed against.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    pub(super) fn mark_inserted(&self) {
        self.inserted.set(true);
    }

    /// The base this state may become: only if stored alone and its own
    /// row went in, so the bytes stored are those it was made from. For
    /// [`Bases::adopt`] once the transaction committed.
    pub fn new_base(&self) -> Option<Arc<Base>> {
        self.candidate.clone().filter(|_| self.inserted.get())
    }
}

/// The CPU-bound half of storing a state (serialize, compress), done
/// before taking a writer's turn. The parsed state goes to the cache: the
/// report that sent it needs it next. `hash` is the state's (hashed once,
/// by the caller).
pub fn prepare_state(state: Arc<PackageState>, hash: String) -> StoreResult<PreparedState> {
    let json = serde_json::to_vec(&*state).map_err(anyhow::Error::from)?;
    let prepared = PreparedState::new(hash.clone(), &state, bases::alone(&json, None)?);
    cache::STATES.insert(hash, state);
    Ok(prepared)
}

/// [`prepare_state`] for a state that came in a full report: `report` is
/// the report's JSON as the machine sent it (`{"hash": …, "packages":
/// […]}`), compressed as it is rather than written again (writing it was a
/// tenth of an upload's time). Reading it back gives `state` ([`read_report`]
/// reads it the same each time), so the content behind the hash is the
/// same; only the bytes may differ from what [`prepare_state`] would store
/// (spacing, the order of fields and packages, a name given twice). The
/// state is not cached here: the report that sent it caches it in its
/// transaction, when it needs it.
///
/// The content is compressed against one of `bases` when one is near
/// enough, alone otherwise ([`super::bases`]); `None` stores it alone.
pub fn prepare_state_report(
    state: &PackageState,
    hash: String,
    report: &[u8],
    bases: Option<&Bases>,
) -> StoreResult<PreparedState> {
    let compressed = match bases {
        Some(b) => b.compress(&hash, state, report)?,
        None => bases::alone(report, None)?,
    };
    Ok(PreparedState::new(hash, state, compressed))
}

pub use pacsync_core::report::{Report, read_report};

/// A state as stored: the list of its packages, or the whole report it
/// came in ([`prepare_state_report`]).
fn read_stored_state(json: &[u8]) -> StoreResult<PackageState> {
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Other(anyhow::anyhow!("stored state unreadable: {e}"))
    };
    if json.trim_ascii_start().first() == Some(&b'{') {
        let text = std::str::from_utf8(json).map_err(|e| unreadable(&e))?;
        let (_, packages) = read_report(text).map_err(|e| unreadable(&e))?;
        return Ok(packages.unwrap_or_default());
    }
    serde_json::from_slice(json).map_err(|e| unreadable(&e))
}

/// Inserts a prepared state unless its content is already there.
pub fn insert_state(conn: &mut DbConnection, p: &PreparedState) -> StoreResult<()> {
    let row = (
        states::hash.eq(&p.hash),
        states::package_count.eq(p.package_count),
        states::content.eq(&p.content),
        states::created_at.eq(now_ms()),
        states::base.eq(&p.base),
    );
    // Two machines may report the same new state at once.
    let inserted = on_each_backend!(conn, |c| diesel::insert_into(states::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    if inserted > 0 {
        p.mark_inserted();
    }
    Ok(())
}

/// Stores `state` unless its content is already there; returns its hash.
pub fn put_state(conn: &mut DbConnection, state: Arc<PackageState>) -> StoreResult<String> {
    let hash = state.content_hash().to_string();
    if has_state(conn, &hash)? {
        cache::STATES.insert(hash.clone(), state);
        return Ok(hash);
    }
    let prepared = prepare_state(state, hash.clone())?;
    insert_state(conn, &prepared)?;
    Ok(hash)
}

thread_local! {
    /// The state a report in this thread's transaction brought, by hash
    /// ([`with_state_at_hand`]).
    static AT_HAND: RefCell<Option<(String, Arc<PackageState>)>> = const { RefCell::new(None) };
}

/// Runs `f` with `state` (whose hash is `hash`) at hand: [`get_state`] of
/// that hash on this thread takes it from here, neither from the cache nor
/// from the database. For a report's own state in its transaction.
pub fn with_state_at_hand<T>(hash: &str, state: &Arc<PackageState>, f: impl FnOnce() -> T) -> T {
    let previous = AT_HAND.replace(Some((hash.to_owned(), state.clone())));
    let out = f();
    AT_HAND.set(previous);
    out
}

pub fn get_state(conn: &mut DbConnection, hash: &str) -> StoreResult<Arc<PackageState>> {
    let at_hand = AT_HAND.with_borrow(|a| {
        a.as_ref()
            .filter(|(h, _)| h == hash)
            .map(|(_, s)| s.clone())
    });
    if let Some(s) = at_hand.or_else(|| cache::STATES.get(hash)) {
        return Ok(s);
    }
    let state = Arc::new(load_state(conn, hash)?);
    cache::STATES.insert(hash.to_owned(), state.clone());
    Ok(state)
}

/// A state as stored, read from the database (no cache).
pub fn load_state(conn: &mut DbConnection, hash: &str) -> StoreResult<PackageState> {
    let (bytes, base): (Vec<u8>, Option<String>) = states::table
        .filter(states::hash.eq(hash))
        .select((states::content, states::base))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("state"))?;
    let json = match base {
        None => decompress_json(&bytes, "state")?,
        // A base is stored alone ([`super::bases`]).
        Some(base) => {
            let base_bytes: Vec<u8> = states::table
                .filter(states::hash.eq(&base))
                .select(states::content)
                .first(conn)?;
            bases::decompress_with(&bytes, &decompress_json(&base_bytes, "state")?)?
        }
    };
    read_stored_state(&json)
}

/// Stores a target's content unless already there; returns its hash.
pub fn put_target(conn: &mut DbConnection, target: &TargetState) -> StoreResult<String> {
    let hash = target.content_hash().to_string();
    let n: i64 = target_contents::table
        .filter(target_contents::hash.eq(&hash))
        .count()
        .get_result(conn)?;
    if n > 0 {
        return Ok(hash);
    }
    let row = (
        target_contents::hash.eq(&hash),
        target_contents::package_count.eq(i64::try_from(target.len()).unwrap_or(i64::MAX)),
        target_contents::content.eq(compress(target)?),
        target_contents::created_at.eq(now_ms()),
    );
    on_each_backend!(conn, |c| diesel::insert_into(target_contents::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(hash)
}

pub fn get_target(conn: &mut DbConnection, hash: &str) -> StoreResult<Arc<TargetState>> {
    if let Some(t) = cache::TARGETS.get(hash) {
        return Ok(t);
    }
    let bytes: Vec<u8> = target_contents::table
        .filter(target_contents::hash.eq(hash))
        .select(target_contents::content)
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("target"))?;
    let target: Arc<TargetState> = Arc::new(decompress(&bytes, "target")?);
    cache::TARGETS.insert(hash.to_owned(), target.clone());
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = r#"[
        {"name": "zlib", "version": "1:1.3-1", "arch": "x86_64", "reason": "dependency"},
        {"name": "bash", "version": "5.2-1", "arch": "x86_64", "reason": "explicit",
         "origin": {"kind": "repo", "repo": "core"}, "installed_size": 9, "depends": ["readline"]}
    ]"#;

    fn state() -> PackageState {
        serde_json::from_str(PACKAGES).expect("the packages parse")
    }

    #[test]
    fn a_stored_state_reads_as_a_list_or_as_the_report_it_came_in() {
        let hash = state().content_hash().to_string();
        let report = format!(r#"{{"hash": "{hash}", "packages": {PACKAGES}}}"#);
        let as_list = serde_json::to_vec(&state()).expect("serialize");
        for stored in [report.as_bytes(), &as_list, PACKAGES.as_bytes()] {
            assert_eq!(read_stored_state(stored).expect("readable"), state());
        }
        let prepared =
            prepare_state_report(&state(), hash, report.as_bytes(), None).expect("compress");
        let json = zstd::decode_all(&prepared.content[..]).expect("zstd");
        assert_eq!(json, report.as_bytes(), "stored as sent");
        assert_eq!(prepared.package_count, 2);
        assert!(read_stored_state(b"{\"hash\": 1}").is_err());
        assert!(read_stored_state(b"not json").is_err());
    }
}
