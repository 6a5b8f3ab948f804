//! `pacsync-server archive …`: the archive's chores from the shell.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::Archive;
use super::records::{self, ArchiveFileRow};
use crate::store::{DbConnection, Store, StoreResult};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Where the archive is, how much it holds, its limit and damage.
    Status,
    /// Re-hash every file; exit 1 when any is damaged or missing.
    Verify,
    /// Remove files no target, retained state history or active operation
    /// references.
    Gc,
    /// What differs between the files of two targets (ids).
    Diff { target_a: String, target_b: String },
    /// Per pool: targets, files referenced, their bytes, and what storing
    /// each file once saves.
    Stats,
    /// Download from the configured mirrors the files of a pool's current
    /// target (every pool's without POOL) that the archive lacks; exit 1
    /// when any could not be had.
    Fill {
        /// A pool's name or id.
        pool: Option<String>,
    },
    /// Add package files (a `FILE.sig` beside one is kept with it).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs `cmd`; returns the process exit code.
pub fn run(store: &Store, archive: &Archive, cmd: ArchiveCommand) -> anyhow::Result<i32> {
    let conn = || store.blocking_conn();
    match cmd {
        ArchiveCommand::Status => {
            let s = archive.status(store)?;
            println!("path     {}", s.path);
            println!("files    {}", s.files);
            println!("bytes    {}", s.bytes);
            println!(
                "limit    {}",
                s.limit_bytes.map_or("none".to_owned(), |l| l.to_string())
            );
            println!("damaged  {}", s.damaged);
            for p in &s.pools {
                match p.target_id {
                    None => println!("pool {}: no target", p.name),
                    Some(_) => println!(
                        "pool {}: {} of {} packages archived ({} bytes), {} missing, {} damaged",
                        p.name, p.archived, p.packages, p.bytes, p.missing, p.damaged
                    ),
                }
            }
            for f in &s.fills {
                print_fill(f, "last fill");
            }
            Ok(0)
        }
        ArchiveCommand::Fill { pool } => {
            let pools: Vec<String> = match pool {
                Some(p) => vec![p],
                None => records::pools_and_targets(&mut *conn()?)?
                    .into_iter()
                    .filter(|(_, _, targets)| !targets.is_empty())
                    .map(|(id, _, _)| id)
                    .collect(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let mut failed = false;
            for p in pools {
                let report = runtime
                    .block_on(archive.fill(store, &p, None))
                    .with_context(|| format!("filling the archive for pool {p}"))?;
                failed |= !report.failed.is_empty();
                print_fill(&report, "fill");
            }
            Ok(i32::from(failed))
        }
        ArchiveCommand::Verify => {
            let r = archive.verify(store)?;
            for d in &r.damaged {
                println!("DAMAGED {d}");
            }
            println!("{} files checked, {} damaged", r.checked, r.damaged.len());
            Ok(i32::from(!r.damaged.is_empty()))
        }
        ArchiveCommand::Gc => {
            let r = archive.gc(store)?;
            for f in &r.removed {
                println!("removed {f}");
            }
            println!(
                "{} files kept, {} removed, {} unrecorded files removed, {} bytes freed",
                r.kept,
                r.removed.len(),
                r.orphans_removed,
                r.freed_bytes
            );
            Ok(0)
        }
        ArchiveCommand::Diff { target_a, target_b } => {
            let mut c = conn()?;
            let a = files_by_name(&mut c, &target_a)?;
            let b = files_by_name(&mut c, &target_b)?;
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let (mut shared, mut differ) = (0usize, 0usize);
            for name in names {
                match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) if x.0 == y.0 && x.1 == y.1 => shared += 1,
                    (x, y) => {
                        differ += 1;
                        println!("{name}: {} -> {}", show(x), show(y));
                    }
                }
            }
            println!("{shared} files shared, {differ} differ");
            Ok(0)
        }
        ArchiveCommand::Stats => {
            let mut c = conn()?;
            let sizes: BTreeMap<String, i64> = records::all(&mut c)?
                .into_iter()
                .map(|r: ArchiveFileRow| (r.sha256, r.size))
                .collect();
            let mut all_targets = 0i64;
            for (pool_id, name, targets) in records::pools_and_targets(&mut c)? {
                let mut unique = BTreeSet::new();
                let mut summed = 0i64;
                let mut missing = 0usize;
                for t in &targets {
                    for (_, (sha, _)) in files_by_name(&mut c, t)? {
                        match sha.and_then(|s| sizes.get(&s).map(|z| (s, *z))) {
                            Some((s, z)) => {
                                summed += z;
                                unique.insert(s);
                            }
                            None => missing += 1,
                        }
                    }
                }
                all_targets += summed;
                let stored: i64 = unique.iter().filter_map(|s| sizes.get(s)).sum();
                println!(
                    "{name} ({pool_id}): {} targets, {} files, {stored} bytes stored for {summed} bytes of targets, {missing} target files not in the archive",
                    targets.len(),
                    unique.len()
                );
            }
            let used = archive.disk.used();
            println!(
                "archive: {} files, {used} bytes on disk; the targets together reference {all_targets} bytes",
                sizes.len()
            );
            Ok(0)
        }
        ArchiveCommand::Import { files } => {
            for path in files {
                let mut f = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let mut sig_path = path.clone().into_os_string();
                sig_path.push(".sig");
                let signature = std::fs::read(&sig_path).ok();
                let done = archive
                    .ingest(store, &mut f, None, signature, "import")
                    .with_context(|| format!("importing {}", path.display()))?;
                println!(
                    "{} {} {} ({})",
                    if done.new { "added" } else { "present" },
                    done.filename,
                    done.sha256,
                    done.size
                );
            }
            Ok(0)
        }
    }
}

fn print_fill(f: &super::fill::FillReport, what: &str) {
    let state = if f.finished_at.is_some() {
        "finished"
    } else {
        "unfinished"
    };
    println!(
        "{what} of pool {} (target {}): {state}, {} missing, {} stored, {} failed",
        f.pool_name,
        f.target_id,
        f.missing,
        f.stored.len(),
        f.failed.len()
    );
    for s in &f.stored {
        println!("  stored {s}");
    }
    for x in &f.failed {
        println!("  FAILED {} {}: {}", x.name, x.version, x.reason);
    }
}

type FileKey = (Option<String>, String);

/// name → (sha256 of its archived file, version) for a target.
fn files_by_name(conn: &mut DbConnection, target: &str) -> StoreResult<BTreeMap<String, FileKey>> {
    let (_, t) = records::target_by_id(conn, target)?;
    Ok(records::files_of(conn, &t)?
        .into_iter()
        .map(|(name, version, row)| (name, (row.map(|r| r.sha256), version)))
        .collect())
}

fn show(f: Option<&FileKey>) -> String {
    match f {
        None => "-".to_owned(),
        Some((Some(sha), v)) => format!("{v} ({})", &sha[..12.min(sha.len())]),
        Some((None, v)) => format!("{v} (not archived)"),
    }
}
