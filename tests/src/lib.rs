//! harness: see modules
