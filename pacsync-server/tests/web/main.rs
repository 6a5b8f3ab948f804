//! The admin web UI: its session over plain HTTP, and the pages driven in
//! headless Chromium through chromedriver, on SQLite and on a throwaway
//! PostgreSQL. Screenshots land in `target/artifacts/web/`.

#[allow(dead_code)]
#[path = "../api/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../api/pg.rs"]
mod pg;

mod browser;
mod scale;
mod session;
mod storage;
mod webdriver;

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
