//! Storage: diesel over SQLite (embedded default) or PostgreSQL, one code
//! path for both through [`DbConnection`].
//!
//! diesel is synchronous, so every use goes through [`Store::run`], which
//! takes a pooled connection on the blocking thread pool.

pub mod api_tokens;
pub mod audit;
pub mod bases;
pub mod cache;
pub mod changes;
pub mod content;
pub mod credentials;
pub mod endpoints;
pub mod models;
pub mod operations;
pub mod pools;
pub mod repos;
pub mod retention;
pub mod schema;
pub mod sessions;
pub mod status;
pub mod wal;

use std::time::Duration;

use diesel::connection::{
    AnsiTransactionManager, Instrumentation, InstrumentationEvent, SimpleConnection,
    TransactionManager,
};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::events::{self, Event, Hub};
use crate::settings::{DatabaseKind, DatabaseSettings};
use changes::{Generations, Touched};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A connection to either backend. Queries written once against this type
/// run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(diesel::SqliteConnection),
    Pg(diesel::PgConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbConnection::Sqlite(_) => "DbConnection::Sqlite",
            DbConnection::Pg(_) => "DbConnection::Pg",
        })
    }
}

/// Runs `$body` with `$c` bound to the concrete connection, for the few
/// statements diesel's multi-backend cannot express (`ON CONFLICT`).
macro_rules! on_each_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::DbConnection::Sqlite($c) => $body,
            $crate::store::DbConnection::Pg($c) => $body,
        }
    };
}
pub(crate) use on_each_backend;

/// What a store call can fail with; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A row named a row that is not there (or no longer).
    pub fn is_foreign_key_violation(&self) -> bool {
        let StoreError::Other(e) = self else {
            return false;
        };
        matches!(
            e.downcast_ref::<DieselError>(),
            Some(DieselError::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        )
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound("record"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::conflict("conflict", info.message().to_owned())
            }
            other => StoreError::Other(other.into()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens connections of the configured backend; SQLite connections get
/// their pragmas here because they are per connection.
#[derive(Debug, Clone)]
struct Manager {
    kind: DatabaseKind,
    url: String,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match self.kind {
            DatabaseKind::Internal => {
                let mut c = diesel::SqliteConnection::establish(&self.url)
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the writer; busy_timeout makes a
                // writer wait for the lock instead of failing at once;
                // synchronous=NORMAL is crash-safe in WAL mode (only an OS
                // crash may lose the last commits).
                // busy_timeout first: switching to WAL itself needs the lock
                // when the pool opens its connections all at once.
                // cache_size: 512 KiB of pages per connection rather than
                // 2 MiB: the operating system caches the file anyway, and
                // eight connections' full caches were a quarter of the
                // resident size.
                // wal_autocheckpoint: the server checkpoints (see [`wal`]).
                c.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                     PRAGMA cache_size = -512; PRAGMA wal_autocheckpoint = {};",
                    wal::BUSY_TIMEOUT_MS,
                    wal::AUTOCHECKPOINT_PAGES
                ))
                .map_err(r2d2::Error::QueryError)?;
                c.set_instrumentation(Watch::default());
                Ok(DbConnection::Sqlite(c))
            }
            DatabaseKind::Postgresql => {
                let mut c = diesel::PgConnection::establish(&self.url)
                    .map_err(r2d2::Error::ConnectionError)?;
                c.set_instrumentation(Watch::default());
                Ok(DbConnection::Pg(c))
            }
        }
    }

    /// Asked each time the pool hands out a connection. One whose last
    /// statement succeeded less than [`TRUSTED_FOR`] ago is taken as it is:
    /// under load that is every one, and the check was a round trip per
    /// request.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        let trusted = conn
            .instrumentation()
            .downcast_ref::<Watch>()
            .and_then(|w| w.succeeded_at)
            .is_some_and(|t| t.elapsed() < TRUSTED_FOR);
        if trusted {
            return Ok(());
        }
        CHECKS.with(|n| n.set(n.get().wrapping_add(1)));
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

thread_local! {
    /// Statements this thread sent to the database (see [`statements_here`]).
    static STATEMENTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Of those, the pool's checks of connections it handed out.
    static CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How long after a statement succeeded its connection is handed out
/// without checking it first. A connection that broke meanwhile (the
/// database restarted) fails one request and is checked at its next turn.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// What a pooled connection's statements tell: each is counted (on
/// PostgreSQL, each is a round trip to the server) on the thread that sends
/// it, and when the last one succeeded is kept (see [`Manager::is_valid`]).
#[derive(Debug, Default)]
struct Watch {
    succeeded_at: Option<std::time::Instant>,
}

impl Instrumentation for Watch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                STATEMENTS.with(|n| n.set(n.get().wrapping_add(1)));
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                self.succeeded_at = error.is_none().then(std::time::Instant::now);
            }
            _ => {}
        }
    }
}

/// How many statements this thread's pooled connections have sent so far,
/// `BEGIN` and `COMMIT` and the pool's checks of the connections it hands
/// out ([`checks_here`]) included: a write made on this thread
/// ([`Store::write_blocking`]) costs the difference between before and
/// after.
pub fn statements_here() -> u64 {
    STATEMENTS.with(std::cell::Cell::get)
}

/// How many of [`statements_here`] were the pool checking a connection
/// before handing it out (one idle for [`TRUSTED_FOR`] or more, or whose
/// last statement failed).
pub fn checks_here() -> u64 {
    CHECKS.with(std::cell::Cell::get)
}

/// The connection pool and the way in to it.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    kind: DatabaseKind,
    hub: Hub,
    /// SQLite has one writer at a time. Writers of this process queue here,
    /// woken the moment the lock is free, rather than in SQLite's busy
    /// handler, which sleeps 1, 2, 5, 10, 15, 20, 25 … ms between retries:
    /// those sleeps were the writers' p99 (~35 and ~80 ms) under load.
    /// The queue is fair (first come, first served, the lock handed from
    /// one writer to the next): an unfair lock lets a thread that just
    /// arrived take it ahead of those already waiting, and under load a few
    /// writers waited many turns, which made the tail of the latencies.
    writer: std::sync::Arc<parking_lot::FairMutex<()>>,
    /// What committed writes changed, for the API's read caches.
    generations: std::sync::Arc<Generations>,
    /// The states new ones are compressed against, for this database.
    bases: std::sync::Arc<bases::Bases>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind).finish()
    }
}

impl Store {
    /// Opens the pool (creating the SQLite file's directory if needed).
    pub fn open(db: &DatabaseSettings) -> anyhow::Result<Store> {
        use anyhow::Context as _;
        let url = db.url.expose().to_owned();
        if db.kind == DatabaseKind::Internal
            && let Some(dir) = std::path::Path::new(&url).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating database directory {}", dir.display()))?;
        }
        let size = db.effective_pool_size();
        let pool = Pool::builder()
            .max_size(size)
            .connection_timeout(Duration::from_secs(10))
            .build(Manager { kind: db.kind, url })
            .with_context(|| format!("opening the {} database", db.kind.as_str()))?;
        Ok(Store {
            pool,
            kind: db.kind,
            hub: Hub::default(),
            writer: std::sync::Arc::default(),
            generations: std::sync::Arc::default(),
            bases: std::sync::Arc::default(),
        })
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The states new ones are compressed against ([`bases`]).
    pub fn bases(&self) -> &std::sync::Arc<bases::Bases> {
        &self.bases
    }

    /// Where committed changes are announced to this process's sockets.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The counters committed writes bump (and, on PostgreSQL, the
    /// notifications of other replicas' writes).
    pub fn generations(&self) -> &std::sync::Arc<Generations> {
        &self.generations
    }

    fn conn(&self) -> StoreResult<PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Other(anyhow::anyhow!("no database connection: {e}")))
    }

    /// A pooled connection for synchronous callers (the admin CLI).
    pub fn blocking_conn(
        &self,
    ) -> anyhow::Result<PooledConnection<impl ManageConnection<Connection = DbConnection>>> {
        self.conn().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Runs pending migrations of the configured backend; returns their names.
    pub fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.conn()?;
        let done = match &mut *conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            DbConnection::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        Ok(done.iter().map(|v| v.to_string()).collect())
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.conn()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// Runs `f` in a write transaction (see [`write_tx`]) and announces
    /// its events once it committed. The read caches count it as having
    /// changed anything ([`Touched::Everything`]).
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<T> + Send + 'static,
    {
        self.write_touching(move |c| f(c).map(|v| (v, Touched::Everything)))
            .await
    }

    /// [`Store::write`] for a transaction that says what it changed, so
    /// that the read caches keep what it did not touch.
    pub async fn write_touching<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<(T, Touched)> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking_touching(f))
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// One statement that changes nothing a cache or a listener follows
    /// (a machine's `last_seen_at`), outside a transaction: atomic by
    /// itself, and without the round trips of `BEGIN` and `COMMIT`. On
    /// SQLite it still waits for the writer's turn.
    pub async fn write_statement<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_statement_blocking(f))
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// [`Store::write_statement`] for callers on their own thread.
    pub fn write_statement_blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConnection) -> StoreResult<T>,
    {
        let _turn = match self.kind {
            DatabaseKind::Internal => Some(self.writer.lock()),
            DatabaseKind::Postgresql => None,
        };
        let mut conn = self.conn()?;
        f(&mut conn)
    }

    /// [`Store::write`] for callers on their own thread.
    pub fn write_blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConnection) -> StoreResult<T>,
    {
        self.write_blocking_touching(|c| f(c).map(|v| (v, Touched::Everything)))
    }

    /// [`Store::write_touching`] for callers on their own thread.
    pub fn write_blocking_touching<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConnection) -> StoreResult<(T, Touched)>,
    {
        // The queue comes before the pool, so waiting writers do not hold
        // connections that readers need.
        let _turn = match self.kind {
            DatabaseKind::Internal => Some(self.writer.lock()),
            DatabaseKind::Postgresql => None,
        };
        let mut conn = self.conn()?;
        let origin = Some(self.generations.origin());
        let ((value, touched), events) = write_tx_events(&mut conn, origin, f)?;
        // Before the caller answers anyone: a read that follows this write
        // must not be served from a cache made before it.
        self.generations.bump(touched);
        // PostgreSQL announces through NOTIFY, which comes back to this
        // process through its listener like to every replica.
        if self.kind == DatabaseKind::Internal {
            for e in events {
                self.hub.publish(e);
            }
        }
        Ok(value)
    }
}

/// A filter: the nullable text column `$column` holds `$value` (an
/// `Option<&str>`), `None` meaning SQL `NULL` — what `=` alone cannot say.
/// For updates guarded on what a row held when it was read.
macro_rules! holds {
    ($column:expr, $value:expr) => {{
        let value: Option<&str> = $value;
        $column
            .eq(value.unwrap_or_default())
            .and(value.is_some().into_sql::<diesel::sql_types::Bool>())
            .or($column
                .is_null()
                .and(value.is_none().into_sql::<diesel::sql_types::Bool>()))
    }};
}
pub(crate) use holds;

/// A transaction that will write. On SQLite it starts with `BEGIN
/// IMMEDIATE`: a deferred transaction that reads first and then writes
/// fails with SQLITE_BUSY when another writer got in between, and
/// busy_timeout cannot help it; taking the write lock up front makes
/// writers queue instead.
///
/// On PostgreSQL the events emitted inside go out with `pg_notify` in the
/// same transaction; on SQLite they are dropped here (see [`Store::write`]).
pub fn write_tx<T, F>(conn: &mut DbConnection, f: F) -> StoreResult<T>
where
    F: FnOnce(&mut DbConnection) -> StoreResult<T>,
{
    write_tx_events(conn, None, |c| f(c).map(|v| (v, Touched::Everything))).map(|((v, _), _)| v)
}

/// [`write_tx`], returning the events of a committed transaction.
/// `origin` is the replica that bumps its own counters once this commits
/// (see [`pg_notices`]); `None` when nobody does.
fn write_tx_events<T, F>(
    conn: &mut DbConnection,
    origin: Option<&str>,
    f: F,
) -> StoreResult<((T, Touched), Vec<Event>)>
where
    F: FnOnce(&mut DbConnection) -> StoreResult<(T, Touched)>,
{
    events::begin();
    NOTICES.set(Notices {
        origin: origin.map(str::to_owned),
        ..Notices::default()
    });
    let result = write_tx_inner(conn, f);
    let events = events::take();
    NOTICES.take();
    result.map(|v| (v, events))
}

thread_local! {
    /// What the write transaction running on this thread (one per thread
    /// at a time, as for [`events::emit`]) sent of its notifications so far.
    static NOTICES: std::cell::RefCell<Notices> = std::cell::RefCell::new(Notices::default());
}

#[derive(Default)]
struct Notices {
    /// The replica that bumps its own counters after the commit.
    origin: Option<String>,
    /// How many of the transaction's events went out.
    events: usize,
    /// The change the other replicas' read caches were told of.
    changes: Option<Touched>,
}

/// The notifications of the running write transaction that have not gone
/// out yet, as `pg_notify`'s channels and payloads, if it ended now having
/// changed `touched`, with `extra` emitted last: its events, and what it
/// changed for the other replicas' read caches. The origin (see
/// [`write_tx_events`]) goes with the latter, so that this replica's
/// listener skips it.
///
/// A statement may carry them (`pg_notify` over `unnest` of the two
/// arrays), saving the commit's own round trip for them; it then calls
/// [`pg_notices_sent`].
pub(crate) fn pg_notices(touched: Touched, extra: &[Event]) -> (Vec<&'static str>, Vec<String>) {
    events::with_pending(|pending| {
        NOTICES.with_borrow(|n| {
            let unsent = pending.get(n.events..).unwrap_or_default();
            let mut payloads = events::pg_payloads(unsent.iter().chain(extra));
            let mut channels = vec![events::PG_CHANNEL; payloads.len()];
            if changes_needed(n, touched, pending.len() + extra.len()) {
                channels.push(changes::PG_CHANNEL);
                payloads.push(touched.as_payload_from(n.origin.as_deref()));
            }
            (channels, payloads)
        })
    })
}

/// Records that a statement carried [`pg_notices`]`(touched, extra)`, once
/// `extra` was emitted.
pub(crate) fn pg_notices_sent(touched: Touched) {
    let emitted = events::with_pending(<[Event]>::len);
    NOTICES.with_borrow_mut(|n| {
        if changes_needed(n, touched, emitted) {
            n.changes = Some(touched);
        }
        n.events = emitted;
    });
}

/// Whether the other replicas still need telling that a transaction with
/// `events` events changed `touched`: they take any event as a change of
/// what lists show; the rest needs saying (a change of credentials always
/// does).
fn changes_needed(n: &Notices, touched: Touched, events: usize) -> bool {
    let needed = touched == Touched::Everything || (touched == Touched::Listed && events == 0);
    needed && n.changes.is_none_or(|told| told < touched)
}

/// Sends what the transaction did not send yet of its notifications (see
/// [`pg_notices`]), all in one statement.
fn pg_notify(conn: &mut diesel::PgConnection, touched: Touched) -> StoreResult<()> {
    use diesel::sql_types::{Array, Text};
    // NOTIFY inside the transaction: PostgreSQL delivers it at commit and
    // drops it on rollback.
    let (channels, payloads) = pg_notices(touched, &[]);
    if payloads.is_empty() {
        return Ok(());
    }
    // One scan of the arrays, in their order, which is the order
    // PostgreSQL delivers them in.
    diesel::sql_query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)")
        .bind::<Array<Text>, _>(channels)
        .bind::<Array<Text>, _>(payloads)
        .execute(conn)?;
    Ok(())
}

fn write_tx_inner<T, F>(conn: &mut DbConnection, f: F) -> StoreResult<(T, Touched)>
where
    F: FnOnce(&mut DbConnection) -> StoreResult<(T, Touched)>,
{
    match conn {
        DbConnection::Pg(_) => conn.transaction(|c| {
            let (value, touched) = f(c)?;
            if let DbConnection::Pg(pg) = c {
                pg_notify(pg, touched)?;
            }
            Ok((value, touched))
        }),
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            let result = f(conn);
            let DbConnection::Sqlite(c) = conn else {
                return Err(anyhow::anyhow!("connection changed backend").into());
            };
            match result {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(c)?;
                    Ok(value)
                }
                Err(e) => {
                    // The original error matters more than a failed rollback.
                    let _ = AnsiTransactionManager::rollback_transaction(c);
                    Err(e)
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `s` could be an id we made; anything else is not found without
/// asking the database.
pub fn is_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}
