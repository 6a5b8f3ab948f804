//! SQLite's write-ahead log, checkpointed by the server beside the
//! requests rather than by them.
//!
//! Left to itself, SQLite checkpoints in the commit that takes the log past
//! 1,000 pages: that request copies the log into the database and waits
//! for its `fsync`, which was the tail of the reports' latency. The pool's
//! connections only do so far past that mark (a backstop); a task calls
//! [`checkpoint`] every [`EVERY`] instead. A passive checkpoint waits for
//! no one, but while readers keep using the log it cannot start the log
//! over, and under constant reads the file grew to 1.7 GB; so once the log
//! holds more than [`RESTART_PAGES`] pages the checkpoint takes a writer's
//! turn and starts the log over, if no reader of an older snapshot is
//! there at that moment (else it tries again at the next tick; past
//! [`PATIENT_PAGES`] it waits for them and truncates the file too).
//! Passive checkpoints catch up with the writers first, so that the
//! restart, during which writers wait, has almost nothing left to copy.

use std::time::Duration;

use diesel::RunQueryDsl as _;
use diesel::connection::SimpleConnection as _;
use diesel::sql_types::Integer;

use super::{DbConnection, Store, StoreResult};
use crate::settings::DatabaseKind;

/// How often the log is checkpointed.
pub const EVERY: Duration = Duration::from_millis(500);

/// Log pages (4 KiB each) past which a checkpoint starts the log over.
pub const RESTART_PAGES: i32 = 2048;

/// The pool's connections checkpoint themselves past this many pages only
/// (when the checkpointer does not run: the admin commands, or it fell
/// behind).
pub const AUTOCHECKPOINT_PAGES: i32 = 16_384;

/// Log pages past which a restart waits for readers rather than being
/// tried again at the next tick (the log's size when the checkpoint
/// began; catching up adds to it).
pub const PATIENT_PAGES: i32 = 4 * RESTART_PAGES;

/// A restart comes once a passive checkpoint found no more than this many
/// pages written since the one before it…
pub const CAUGHT_UP_PAGES: i32 = 64;

/// …or after this many passes, whichever comes first.
pub const CATCH_UP_PASSES: usize = 4;

/// How long a connection waits for a lock SQLite holds (another process's
/// writer, a checkpoint) before it fails with "database is locked".
pub const BUSY_TIMEOUT_MS: u32 = 15_000;

fn set_busy_timeout(conn: &mut DbConnection, ms: u32) -> StoreResult<()> {
    if let DbConnection::Sqlite(c) = conn {
        c.batch_execute(&format!("PRAGMA busy_timeout = {ms}"))?;
    }
    Ok(())
}

/// What `PRAGMA wal_checkpoint` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::QueryableByName)]
pub struct Checkpoint {
    /// 1 when it could not finish (a writer or readers held it up).
    #[diesel(sql_type = Integer)]
    pub busy: i32,
    /// Pages in the log (−1 when the database is not in WAL mode).
    #[diesel(sql_type = Integer)]
    pub log: i32,
    /// Pages of the log now in the database.
    #[diesel(sql_type = Integer)]
    pub checkpointed: i32,
}

fn run(conn: &mut DbConnection, mode: &str) -> StoreResult<Option<Checkpoint>> {
    let DbConnection::Sqlite(c) = conn else {
        return Ok(None);
    };
    let row = diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(c)?;
    Ok(Some(row))
}

impl Store {
    /// One checkpoint (see the module's documentation); on PostgreSQL
    /// nothing. Answers what the last checkpoint it ran reported.
    pub fn checkpoint(&self) -> StoreResult<Option<Checkpoint>> {
        if self.kind != DatabaseKind::Internal {
            return Ok(None);
        }
        let first = {
            let mut conn = self.conn()?;
            let first = match run(&mut conn, "PASSIVE")? {
                Some(p) if p.log > RESTART_PAGES => p,
                other => return Ok(other),
            };
            catch_up(&mut conn, first)?;
            // A passive checkpoint leaves the database file unflushed
            // while writers add to the log (SQLite flushes it only when a
            // checkpoint reached the log's end), so the restart would
            // flush all that the passes copied, writers waiting: flushed
            // here instead, then one more pass for what came in meanwhile.
            flush(&mut conn);
            run(&mut conn, "PASSIVE")?;
            first
        };
        // Queued like any writer, so that writers wait here rather than in
        // SQLite's busy handler.
        let _turn = self.writer.lock();
        let mut conn = self.conn()?;
        if first.log > PATIENT_PAGES {
            return run(&mut conn, "TRUNCATE");
        }
        // A reader of an older snapshot holds the restart up, and SQLite's
        // busy handler waits for it in sleeps of 1, 2, 5, 10, 15, 20 ms
        // while every writer waits behind it. So the restart does not
        // wait: if a reader is there, it is tried again at the next tick.
        // And it only starts the log over in the same file (`RESTART`):
        // truncating the file as well took twice as long (10–52 ms against
        // 3–32 ms before the catch-up), all of it with the writers waiting.
        // The file keeps the size it reached, about [`PATIENT_PAGES`] at
        // most; the patient restart above truncates it.
        set_busy_timeout(&mut conn, 0)?;
        let done = run(&mut conn, "RESTART");
        set_busy_timeout(&mut conn, BUSY_TIMEOUT_MS)?;
        done
    }
}

/// `fsync`s the database's file and answers its name; a failure is only
/// logged (the restart flushes it anyway).
fn flush(conn: &mut DbConnection) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct File {
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    let DbConnection::Sqlite(c) = conn else {
        return None;
    };
    let file = match diesel::sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'")
        .get_result::<File>(c)
    {
        Ok(f) if !f.file.is_empty() => f.file,
        // An in-memory database has no file.
        Ok(_) => return None,
        Err(e) => {
            tracing::debug!("finding the database's file: {e}");
            return None;
        }
    };
    match std::fs::File::open(&file).and_then(|f| f.sync_data()) {
        Ok(()) => Some(file),
        Err(e) => {
            tracing::debug!("flushing {file}: {e}");
            None
        }
    }
}

/// What a restart still has to copy, it copies during the writers' turn,
/// and then waits for the database file's `fsync` — about 20 µs a page
/// here: the 400–800 pages written while a passive checkpoint of 4,000
/// took 50–100 ms kept every writer waiting 20–38 ms. So before a restart
/// the checkpoint catches up with the writers, each pass copying what came
/// in during the one before, until a pass finds almost nothing new.
fn catch_up(conn: &mut DbConnection, first: Checkpoint) -> StoreResult<()> {
    let mut seen = first;
    for _ in 0..CATCH_UP_PASSES {
        let Some(next) = run(conn, "PASSIVE")? else {
            break;
        };
        let grown = next.log - seen.checkpointed;
        seen = next;
        if grown <= CAUGHT_UP_PAGES {
            break;
        }
    }
    Ok(())
}

/// Checkpoints every [`EVERY`] until aborted (SQLite only).
pub async fn checkpoint_now_and_then(store: Store) {
    if store.kind() != DatabaseKind::Internal {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("checkpoint of the database's log failed: {e}"),
            Err(e) => tracing::warn!("checkpoint task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DatabaseSettings, Secret};

    fn wal_bytes(db: &std::path::Path) -> u64 {
        std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len())
    }

    /// Writes `mib` MiB in 1 MiB rows, one transaction each.
    fn fill(store: &Store, mib: usize) {
        for _ in 0..mib {
            store
                .write_blocking(|c| {
                    diesel::sql_query("INSERT INTO filler VALUES (zeroblob(1048576))")
                        .execute(c)
                        .map_err(Into::into)
                })
                .expect("insert");
        }
    }

    /// A store on a fresh SQLite file with an empty `filler` table; the
    /// directory lives as long as its guard.
    fn store_with_filler() -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("p.db");
        let store = Store::open(&DatabaseSettings {
            kind: DatabaseKind::Internal,
            url: Secret::new(db.display().to_string()),
            pool_size: 8,
        })
        .expect("open");
        store
            .write_blocking(|c| {
                diesel::sql_query("CREATE TABLE filler (b BLOB)")
                    .execute(c)
                    .map_err(Into::into)
            })
            .expect("create");
        (dir, db, store)
    }

    #[test]
    fn the_log_is_checkpointed_by_the_server_and_started_over_past_its_size() {
        let (_dir, db, store) = store_with_filler();

        // Below the restart size: a passive checkpoint copies everything
        // and leaves the file as it is.
        fill(&store, 2);
        let small = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert_eq!(small.busy, 0);
        assert!(small.log > 512, "{small:?}");
        assert_eq!(small.checkpointed, small.log, "{small:?}");
        assert!(wal_bytes(&db) > 2 << 20);

        // 20 MiB: past SQLite's own mark (1,000 pages) many times over, yet
        // the log only grew: the connections leave checkpoints to the
        // server. Then one checkpoint starts it over.
        fill(&store, 20);
        let grown = wal_bytes(&db);
        assert!(grown > 20 << 20, "{grown}");
        let big = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert_eq!(big.busy, 0, "{big:?}");
        // Started over in the same file: the next writes go to its start,
        // so the file does not grow and the log holds only them.
        fill(&store, 1);
        assert_eq!(wal_bytes(&db), grown);
        let after = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert!(after.log < 512, "{after:?}");

        // Past the patient mark the restart truncates the file as well.
        fill(&store, 33);
        let patient = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert_eq!(patient.busy, 0, "{patient:?}");
        assert_eq!(wal_bytes(&db), 0);

        // Everything written is in the database file.
        let mut conn = store.blocking_conn().expect("connection");
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let DbConnection::Sqlite(c) = &mut *conn else {
            panic!("SQLite")
        };
        let count: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM filler")
            .get_result(c)
            .expect("count");
        assert_eq!(count.n, 56);
    }

    #[test]
    fn the_database_file_is_flushed_outside_the_writers_turn() {
        let (_dir, db, store) = store_with_filler();
        let mut conn = store.blocking_conn().expect("connection");
        let flushed = flush(&mut conn).expect("flushed");
        assert_eq!(
            std::fs::canonicalize(flushed).expect("flushed file"),
            std::fs::canonicalize(&db).expect("database file")
        );
    }

    #[test]
    fn a_restart_does_not_wait_for_a_reader_until_the_log_is_large() {
        let (_dir, db, store) = store_with_filler();
        fill(&store, 18);

        // A reader in the middle of a transaction, on a snapshot that
        // needs the log.
        let mut reader = store.blocking_conn().expect("connection");
        let DbConnection::Sqlite(r) = &mut *reader else {
            panic!("SQLite")
        };
        r.batch_execute("BEGIN; SELECT COUNT(*) FROM filler;")
            .expect("read");
        fill(&store, 1);

        // The restart gives up at once (busy) instead of waiting out the
        // busy timeout (15 s); nothing is lost and the log is still there.
        let started = std::time::Instant::now();
        let held = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert_eq!(held.busy, 1, "{held:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(wal_bytes(&db) > 16 << 20);

        // The connection that ran it waits for locks again as before.
        let mut conn = store.blocking_conn().expect("connection");
        #[derive(diesel::QueryableByName)]
        struct Timeout {
            #[diesel(sql_type = Integer)]
            timeout: i32,
        }
        let DbConnection::Sqlite(c) = &mut *conn else {
            panic!("SQLite")
        };
        let t: Timeout = diesel::sql_query("PRAGMA busy_timeout")
            .get_result(c)
            .expect("busy_timeout");
        assert_eq!(t.timeout, BUSY_TIMEOUT_MS as i32);
        drop(conn);

        // Once the reader is done, the next tick starts the log over.
        r.batch_execute("COMMIT").expect("end the read");
        drop(reader);
        let done = store.checkpoint().expect("checkpoint").expect("SQLite");
        assert_eq!(done.busy, 0, "{done:?}");
        let size = wal_bytes(&db);
        fill(&store, 1);
        assert_eq!(wal_bytes(&db), size, "the log started over");
    }
}
