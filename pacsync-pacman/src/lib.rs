//! Reading what pacman keeps on disk, for the daemon and the tools.
//!
//! `pacsync-core` parses bytes; this crate finds the files (local database
//! directory, sync databases, `pacman.conf` and its `Include`s), reads them
//! and names the file in every error.

pub mod conf;
pub mod db;
