//! Repositories machines report and the per-pool repository analysis.
//!
//! Each repository (name and package → version map) is stored once per
//! distinct content under its [`RepoIndex::content_hash`]; a machine keeps only the list
//! of hashes in its pacman.conf order. The analysis of a pool runs over the
//! distinct repository *lists* of its members — machines on the same
//! mirrors count once — and the names it excludes are kept on the pool,
//! where they join the pool's exclusions for status, plan and target.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::prelude::*;
use pacsync_core::analysis::{MachineRepos, Overrides, RepoAnalysis, RepoIndex, analyze};

use super::models::PoolRow;
use super::schema::{endpoint_repos, endpoints, pools, repo_contents};
use super::{DbConnection, StoreError, StoreResult, content, now_ms, on_each_backend, status};

/// The hashes among `hashes` whose content the server lacks.
pub fn missing(conn: &mut DbConnection, hashes: &[String]) -> StoreResult<Vec<String>> {
    let known: BTreeSet<String> = repo_contents::table
        .filter(repo_contents::hash.eq_any(hashes))
        .select(repo_contents::hash)
        .load(conn)?
        .into_iter()
        .collect();
    Ok(hashes
        .iter()
        .filter(|h| !known.contains(*h))
        .cloned()
        .collect())
}

/// Stores a repository's content unless already there.
pub fn put(conn: &mut DbConnection, repo: &RepoIndex) -> StoreResult<String> {
    let hash = repo.content_hash();
    if missing(conn, std::slice::from_ref(&hash))?.is_empty() {
        return Ok(hash);
    }
    let row = (
        repo_contents::hash.eq(&hash),
        repo_contents::name.eq(&repo.name),
        repo_contents::package_count.eq(i64::try_from(repo.packages.len()).unwrap_or(i64::MAX)),
        repo_contents::content.eq(content::compress(repo)?),
        repo_contents::created_at.eq(now_ms()),
    );
    on_each_backend!(conn, |c| diesel::insert_into(repo_contents::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(hash)
}

/// Records a machine's repository list (hashes whose content is stored).
/// Returns whether it changed; an unchanged list writes nothing.
pub fn report(conn: &mut DbConnection, endpoint_id: &str, hashes: &[String]) -> StoreResult<bool> {
    let current: Vec<String> = endpoint_repos::table
        .filter(endpoint_repos::endpoint_id.eq(endpoint_id))
        .order(endpoint_repos::position.asc())
        .select(endpoint_repos::repo_hash)
        .load(conn)?;
    if current == hashes {
        return Ok(false);
    }
    diesel::delete(endpoint_repos::table.filter(endpoint_repos::endpoint_id.eq(endpoint_id)))
        .execute(conn)?;
    let now = now_ms();
    // Row by row: a handful of rows, and diesel's multi-backend connection
    // has no batch insert that SQLite accepts.
    for (i, h) in hashes.iter().enumerate() {
        diesel::insert_into(endpoint_repos::table)
            .values((
                endpoint_repos::endpoint_id.eq(endpoint_id),
                endpoint_repos::position.eq(i32::try_from(i).unwrap_or(i32::MAX)),
                endpoint_repos::repo_hash.eq(h),
                endpoint_repos::reported_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(true)
}

/// A distinct repository in use: its hash, name, size and how many
/// machines (of the pool, when given) list it.
#[derive(Debug, Clone)]
pub struct RepoUse {
    pub hash: String,
    pub name: String,
    pub package_count: i64,
    pub machines: i64,
}

pub fn list(
    conn: &mut DbConnection,
    pool_id: Option<&str>,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<RepoUse>, i64)> {
    // Counted here rather than with GROUP BY, which diesel cannot box
    // over this join; a fleet lists a few repositories per machine.
    let mut q = endpoint_repos::table
        .inner_join(endpoints::table)
        .into_boxed();
    if let Some(p) = pool_id {
        q = q.filter(endpoints::pool_id.eq(p.to_owned()));
    }
    let mut uses: BTreeMap<String, i64> = BTreeMap::new();
    for h in q.select(endpoint_repos::repo_hash).load::<String>(conn)? {
        *uses.entry(h).or_default() += 1;
    }
    let keys: Vec<&String> = uses.keys().collect();
    let mut rows: Vec<RepoUse> = repo_contents::table
        .filter(repo_contents::hash.eq_any(keys))
        .select((
            repo_contents::hash,
            repo_contents::name,
            repo_contents::package_count,
        ))
        .load::<(String, String, i64)>(conn)?
        .into_iter()
        .map(|(hash, name, package_count)| RepoUse {
            machines: uses.get(&hash).copied().unwrap_or(0),
            hash,
            name,
            package_count,
        })
        .collect();
    rows.sort_by(|a, b| (&a.name, &a.hash).cmp(&(&b.name, &b.hash)));
    let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let rows = rows
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    Ok((rows, total))
}

pub fn overrides_of(pool: &PoolRow) -> StoreResult<Overrides> {
    serde_json::from_str(&pool.repo_overrides)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("pool overrides unreadable: {e}")))
}

/// A pool's analysis: one column per distinct repository list among the
/// members that reported theirs, with the names of the machines sharing it.
#[derive(Debug)]
pub struct PoolAnalysis {
    pub analysis: RepoAnalysis,
    /// Per column of `analysis.machines`, the machines it stands for.
    pub groups: Vec<Vec<String>>,
    pub target_hash: Option<String>,
}

pub fn analyze_pool(conn: &mut DbConnection, pool_id: &str) -> StoreResult<PoolAnalysis> {
    let view = status::load_pool(conn, pool_id)?;
    let overrides = overrides_of(&view.pool)?;
    let Some((target_row, target)) = view.target else {
        return Ok(PoolAnalysis {
            analysis: RepoAnalysis::default(),
            groups: Vec::new(),
            target_hash: None,
        });
    };
    let rows: Vec<(String, String, String)> = endpoint_repos::table
        .inner_join(endpoints::table)
        .filter(endpoints::pool_id.eq(pool_id))
        .order((
            endpoints::name.asc(),
            endpoints::id.asc(),
            endpoint_repos::position.asc(),
        ))
        .select((endpoints::id, endpoints::name, endpoint_repos::repo_hash))
        .load(conn)?;
    // Each member's list of hashes, then members grouped by identical lists.
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    let mut last_id = String::new();
    for (id, name, hash) in rows {
        if id != last_id || lists.is_empty() {
            lists.push((name, Vec::new()));
            last_id = id;
        }
        if let Some((_, l)) = lists.last_mut() {
            l.push(hash);
        }
    }
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (name, list) in lists {
        groups.entry(list).or_default().push(name);
    }
    let mut contents: HashMap<String, RepoIndex> = HashMap::new();
    let mut members = Vec::new();
    let mut names = Vec::new();
    for (list, machines) in groups {
        let mut repos = Vec::new();
        for h in &list {
            if !contents.contains_key(h) {
                let bytes: Vec<u8> = repo_contents::table
                    .find(h)
                    .select(repo_contents::content)
                    .first(conn)?;
                contents.insert(h.clone(), content::decompress(&bytes, "repository")?);
            }
            if let Some(r) = contents.get(h) {
                repos.push(r.clone());
            }
        }
        members.push(MachineRepos {
            machine: machines.join(", "),
            repos,
        });
        names.push(machines);
    }
    let analysis = if members.is_empty() {
        // Nobody reported repositories yet: nothing is known to be missing.
        RepoAnalysis::default()
    } else {
        analyze(&target, &members, &overrides)
    };
    Ok(PoolAnalysis {
        analysis,
        groups: names,
        target_hash: Some(target_row.target_hash),
    })
}

/// Re-runs a pool's analysis and stores the names it excludes; returns
/// whether they changed (then the caller recomputes the members).
pub fn refresh_pool(conn: &mut DbConnection, pool_id: &str) -> StoreResult<bool> {
    let excluded: Vec<String> = analyze_pool(conn, pool_id)?
        .analysis
        .excluded_names()
        .into_iter()
        .collect();
    store_excluded(conn, pool_id, &excluded)
}

/// After a change that may move a pool's analysis (membership, reported
/// repositories, overrides): refresh it and, when its exclusions moved,
/// recompute the members and tell the machines their policy changed.
pub fn after_change(conn: &mut DbConnection, pool_id: &str) -> StoreResult<()> {
    if refresh_pool(conn, pool_id)? {
        status::recompute_pool(conn, pool_id)?;
        super::pools::announce_policy(pool_id);
    }
    Ok(())
}

fn store_excluded(conn: &mut DbConnection, pool_id: &str, names: &[String]) -> StoreResult<bool> {
    let text = serde_json::to_string(names).map_err(anyhow::Error::from)?;
    let n = diesel::update(
        pools::table
            .find(pool_id)
            .filter(pools::analysis_excluded.ne(&text)),
    )
    .set(pools::analysis_excluded.eq(&text))
    .execute(conn)?;
    Ok(n > 0)
}

/// Analysis switched off: no pool keeps names from an earlier analysis.
/// Returns the pools whose exclusions changed.
pub fn clear_all(conn: &mut DbConnection) -> StoreResult<Vec<String>> {
    let pools_with: Vec<String> = pools::table
        .filter(pools::analysis_excluded.ne("[]"))
        .select(pools::id)
        .load(conn)?;
    for p in &pools_with {
        store_excluded(conn, p, &[])?;
    }
    Ok(pools_with)
}
