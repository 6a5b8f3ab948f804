//! The pacsync domain, free of I/O and async.
//!
//! Everything here takes bytes or values and returns values: pacman's version
//! order, the ALPM text formats (local `desc`, sync databases, `pacman.conf`),
//! package states and their content hash, the state report machines send,
//! the sync plan between two states, the status of a machine against its
//! pool's target, and the repository analysis of a pool.

pub mod analysis;
pub mod desc;
pub mod exclusion;
pub mod localdb;
pub mod package;
pub mod pacman_conf;
pub mod plan;
pub mod report;
pub mod state;
pub mod status;
pub mod syncdb;
pub mod version;

pub use package::{InstallReason, Package};
pub use version::{Version, vercmp};
