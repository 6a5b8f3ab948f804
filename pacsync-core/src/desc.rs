//! desc
