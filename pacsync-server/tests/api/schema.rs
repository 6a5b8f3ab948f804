//! Both migration folders define the same tables, columns and nullability.

use std::collections::BTreeSet;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use pacsync_server::store::{DbConnection, Store};

#[derive(Debug, QueryableByName, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

fn columns(store: &Store) -> BTreeSet<(String, String, bool)> {
    let mut conn = store.blocking_conn().expect("connection");
    let rows: Vec<Column> = match &mut *conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, (p.\"notnull\" = 0) AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations'",
        )
        .load(c),
        DbConnection::Pg(c) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             (is_nullable = 'YES') AS nullable FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load(c),
    }
    .expect("catalog query");
    rows.into_iter()
        .map(|c| (c.table_name, c.column_name, c.nullable))
        .collect()
}

#[test]
fn both_migration_folders_define_the_same_schema() {
    let Some(pg) = crate::pg::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = crate::harness::settings_for(dir.path(), &[]);
    let postgres = crate::harness::settings_for(
        dir.path(),
        &[("DATABASE_TYPE", "postgresql"), ("DATABASE_URL", &pg.url)],
    );
    let a = Store::open(&sqlite.database).expect("sqlite");
    let b = Store::open(&postgres.database).expect("postgres");
    a.migrate().expect("sqlite migrations");
    b.migrate().expect("postgres migrations");
    let (ca, cb) = (columns(&a), columns(&b));
    assert!(ca.len() > 50, "suspiciously few columns: {ca:?}");
    let only_sqlite: Vec<_> = ca.difference(&cb).collect();
    let only_pg: Vec<_> = cb.difference(&ca).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "only in SQLite: {only_sqlite:?}\nonly in PostgreSQL: {only_pg:?}"
    );
    // Migrations are idempotent: a second run applies nothing.
    assert!(a.migrate().expect("again").is_empty());
    assert!(b.migrate().expect("again").is_empty());
}

#[derive(Debug, QueryableByName)]
struct Storage {
    #[diesel(sql_type = Text)]
    column: String,
    #[diesel(sql_type = Text)]
    storage: String,
}

/// Contents are zstd-compressed before they are stored: PostgreSQL keeps
/// them out of line without trying its own compression on them again.
#[test]
fn compressed_contents_are_not_compressed_again_by_postgresql() {
    let Some(pg) = crate::pg::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = crate::harness::settings_for(
        dir.path(),
        &[("DATABASE_TYPE", "postgresql"), ("DATABASE_URL", &pg.url)],
    );
    let store = Store::open(&postgres.database).expect("postgres");
    store.migrate().expect("postgres migrations");
    let mut conn = store.blocking_conn().expect("connection");
    let DbConnection::Pg(c) = &mut *conn else {
        panic!("PostgreSQL")
    };
    let rows: Vec<Storage> = diesel::sql_query(
        "SELECT c.relname || '.' || a.attname AS column, a.attstorage::text AS storage \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relname IN ('states', 'target_contents', 'repo_contents') \
         AND a.attname = 'content' ORDER BY 1",
    )
    .load(c)
    .expect("catalog query");
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.column.as_str(), r.storage.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("repo_contents.content", "e"),
            ("states.content", "e"),
            ("target_contents.content", "e"),
        ]
    );
}
