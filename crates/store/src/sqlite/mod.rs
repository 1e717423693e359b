//! Placeholder replaced by the SQLite backend.

/// The embedded store backend (SQLite, WAL mode).
pub struct SqliteStore;
