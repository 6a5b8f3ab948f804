//! The harness every pacsync integration test builds on: real package files,
//! `file://` repositories made by `repo-add`, and sandboxed roots driven by the
//! real `pacman`, plus generators of large realistic databases for benchmarks.
//!
//! Everything lives in unique temporary directories, so tests using it run in
//! parallel. Set `PACSYNC_KEEP_SANDBOX=1` to keep the directories of a failing
//! test for inspection.

pub mod admin_watch;
pub mod command;
pub mod daemon_process;
pub mod desc;
pub mod desktop;
pub mod docgen;
pub mod generate;
pub mod machine;
pub mod office;
pub mod package;
pub mod pacman_output;
/// A throwaway PostgreSQL, the one the server's API tests start.
#[path = "../../pacsync-server/tests/api/pg.rs"]
#[allow(missing_debug_implementations)]
pub mod postgres;
pub mod repo;
pub mod require;
pub mod sandbox;
pub mod scratch;
pub mod server_process;
pub mod synthetic;
pub mod system_bus;
pub mod waybar_stream;

pub use command::CommandError;
pub use desc::{LocalInstall, SyncFile};
pub use generate::{
    DbCompression, generate_local_db, generate_sync_db, verify_local_db, verify_sync_db,
};
pub use package::{PackageSpec, noise};
pub use repo::Repo;
pub use require::{require_binary, require_pacman_sandbox, require_root};
pub use sandbox::Sandbox;
pub use scratch::ScratchDir;
pub use synthetic::{SyntheticPackage, synthetic_packages};
