//! syncdb
