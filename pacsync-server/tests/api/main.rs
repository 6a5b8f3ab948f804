//! The server launched in-process on 127.0.0.1:0, driven over real HTTP,
//! on SQLite and on a throwaway PostgreSQL.

mod api_tokens;
mod archive;
mod archive_fill;
mod archive_gc;
mod archive_kill;
mod authz;
mod bad_input;
mod bases;
mod caches;
mod concurrency;
mod durability;
mod flow;
mod harness;
mod mirror;
mod openapi;
mod operations;
mod packaging;
mod pg;
mod pg_tls;
mod push;
mod repositories;
mod retention;
mod round_trips;
mod schema;
mod serve;
mod uploads;
mod users;

/// Runs the scenario `$name(Backend)` as two tests, one per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Backend::Postgres).await;
                }
            }
        )*
    };
}
