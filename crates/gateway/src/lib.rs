//! The gateway node: Discord shards spread over the mesh, their events published to the
//! broker, moved between nodes by RESUME.

mod identify_queue;

pub use identify_queue::StoreQueue;
