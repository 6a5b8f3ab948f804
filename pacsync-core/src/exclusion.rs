//! exclusion
