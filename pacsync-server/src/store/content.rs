//! Content-addressed package states and target contents: each distinct
//! content is one row, keyed by its [`ContentHash`], stored as
//! zstd-compressed JSON. Most machines share a state, so 10,000 machines
//! cost little more than 100.

use diesel::prelude::*;
use pacsync_core::state::{PackageState, TargetState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;

use super::schema::{states, target_contents};
use super::{DbConnection, StoreError, StoreResult, cache, now_ms, on_each_backend};
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

fn compress_json(json: &[u8]) -> StoreResult<Vec<u8>> {
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

pub(crate) fn decompress<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    let json = zstd::decode_all(bytes)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("stored {what} unreadable: {e}")))?;
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
}

/// A state's packages as the JSON array `PackageState` reads back,
/// written from the map itself: `PackageState`'s own `Serialize` goes
/// through a cloned `Vec<Package>`.
struct PackageList<'a>(&'a PackageState);

impl Serialize for PackageList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// The CPU-bound half of storing a state (serialize, compress), done
/// before taking a writer's turn. The parsed state goes to the cache: the
/// report that sent it needs it next. `hash` is the state's (hashed once,
/// by the caller).
pub fn prepare_state(state: Arc<PackageState>, hash: String) -> StoreResult<PreparedState> {
    let json = serde_json::to_vec(&PackageList(&state)).map_err(anyhow::Error::from)?;
    let prepared = prepare_state_json(&state, hash.clone(), &json)?;
    cache::STATES.insert(hash, state);
    Ok(prepared)
}

/// [`prepare_state`] for a state that came as JSON: `json` is the array of
/// packages it was read from, compressed as it is rather than written
/// again (writing it was a tenth of an upload's time). Reading it back
/// gives `state` (a package array reads the same each time), so the
/// content behind the hash is the same; only the bytes may differ from
/// what [`prepare_state`] would store (spacing, the order of fields and
/// packages, fields a package does not have, a name given twice). The
/// state is not cached here: the report that sent it caches it in its
/// transaction, when it needs it.
pub fn prepare_state_json(
    state: &PackageState,
    hash: String,
    json: &[u8],
) -> StoreResult<PreparedState> {
    Ok(PreparedState {
        package_count: i64::try_from(state.len()).unwrap_or(i64::MAX),
        content: compress_json(json)?,
        hash,
    })
}

/// Inserts a prepared state unless its content is already there.
pub fn insert_state(conn: &mut DbConnection, p: &PreparedState) -> StoreResult<()> {
    let row = (
        states::hash.eq(&p.hash),
        states::package_count.eq(p.package_count),
        states::content.eq(&p.content),
        states::created_at.eq(now_ms()),
    );
    // Two machines may report the same new state at once.
    on_each_backend!(conn, |c| diesel::insert_into(states::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
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

pub fn get_state(conn: &mut DbConnection, hash: &str) -> StoreResult<Arc<PackageState>> {
    if let Some(s) = cache::STATES.get(hash) {
        return Ok(s);
    }
    let bytes: Vec<u8> = states::table
        .filter(states::hash.eq(hash))
        .select(states::content)
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("state"))?;
    let state: Arc<PackageState> = Arc::new(decompress(&bytes, "state")?);
    cache::STATES.insert(hash.to_owned(), state.clone());
    Ok(state)
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
