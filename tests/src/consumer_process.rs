//! `shardmesh consumer` as a real process: a [`NodeProcess`] started with a group and an
//! HTTP sink, which also remembers its group and when it was killed.

use std::ops::{Deref, DerefMut};
use std::path::Path;

use tokio::time::Instant;

use crate::process::NodeProcess;

/// A running (or ended) `shardmesh --config <file> consumer --group G --sink URL`.
///
/// Everything a node process offers (endpoints, SIGTERM, logs) is reached through
/// [`Deref`] to [`NodeProcess`]; [`ConsumerProcess::kill`] also notes the moment.
#[derive(Debug)]
pub struct ConsumerProcess {
    node: NodeProcess,
    group: String,
    /// When it was killed with SIGKILL, if it was.
    killed_at: Option<Instant>,
}

impl ConsumerProcess {
    /// Starts consumer node `id` of `group` posting to `sink` (an `http://` URL), and
    /// waits for its `listening on http://ADDR` line on stdout.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned, exits, or prints no such line within 30 s;
    /// the message carries the end of its log.
    pub async fn start(id: &str, group: &str, sink: &str, config: &Path, log: &Path) -> Self {
        let command = ["consumer", "--group", group, "--sink", sink];
        Self {
            node: NodeProcess::start(id, "consumer", &command, config, log, &[]).await,
            group: group.to_owned(),
            killed_at: None,
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// When it was killed with SIGKILL, if it was.
    pub fn killed_at(&self) -> Option<Instant> {
        self.killed_at
    }

    /// Sends SIGKILL (a crash: no hand-over, no final checkpoint), reaps the process and
    /// notes when.
    ///
    /// # Panics
    ///
    /// When the process cannot be killed.
    pub async fn kill(&mut self) {
        self.node.kill().await;
        self.killed_at = Some(Instant::now());
    }

    /// The last `lines` lines of the log, headed by the node id and group.
    pub fn log_tail(&self, lines: usize) -> String {
        format!("(group {}) {}", self.group, self.node.log_tail(lines))
    }
}

impl Deref for ConsumerProcess {
    type Target = NodeProcess;

    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

impl DerefMut for ConsumerProcess {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.node
    }
}
