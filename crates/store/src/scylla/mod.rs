//! Placeholder replaced by the ScyllaDB backend.

/// The distributed store backend (ScyllaDB, LWT leases).
pub struct ScyllaStore;
