//! A set of node processes, gateways and consumers alike: started together, found by
//! id, killed or terminated one at a time, and remembered after they end so a test can
//! still read their logs.

use std::process::ExitStatus;
use std::time::Duration;

use crate::process::NodeProcess;

/// Lines of each node's log printed when a test fails.
const TAIL_LINES: usize = 60;

/// The node processes of a test (or of the demo), running and ended.
#[derive(Debug, Default)]
pub struct Fleet {
    running: Vec<NodeProcess>,
    ended: Vec<NodeProcess>,
}

impl Fleet {
    /// Runs the `starts` side by side and adds each node once it serves HTTP.
    ///
    /// # Panics
    ///
    /// When a node does not start (the start's own panic, with the end of its log).
    pub async fn start_all<F>(&mut self, starts: impl IntoIterator<Item = F>)
    where
        F: Future<Output = NodeProcess> + Send + 'static,
    {
        let mut starting = tokio::task::JoinSet::new();
        for start in starts {
            starting.spawn(start);
        }
        while let Some(started) = starting.join_next().await {
            match started {
                Ok(node) => self.running.push(node),
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
    }

    /// Adds a node started elsewhere.
    pub fn add(&mut self, node: NodeProcess) {
        self.running.push(node);
    }

    /// The running node `id`.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn node(&self, id: &str) -> &NodeProcess {
        self.running
            .iter()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no running node {id}"))
    }

    /// The running node `id`, to signal or inspect, if there is one.
    pub fn node_mut(&mut self, id: &str) -> Option<&mut NodeProcess> {
        self.running.iter_mut().find(|node| node.id() == id)
    }

    /// The running nodes.
    pub fn nodes(&self) -> &[NodeProcess] {
        &self.running
    }

    /// The running consumers of `group`.
    pub fn group(&self, group: &str) -> Vec<&NodeProcess> {
        self.running
            .iter()
            .filter(|node| node.group() == Some(group))
            .collect()
    }

    /// The node `id` that was killed or terminated.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn ended(&self, id: &str) -> &NodeProcess {
        self.ended
            .iter()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no ended node {id}"))
    }

    /// SIGKILLs node `id` (a crash: no hand-over, no goodbye).
    pub async fn kill(&mut self, id: &str) {
        let mut node = self.take(id);
        node.kill().await;
        self.ended.push(node);
    }

    /// SIGTERMs node `id` (a drain) and waits up to `timeout` for it to exit.
    ///
    /// # Panics
    ///
    /// When it outlives `timeout` (it is then killed), with the end of its log.
    pub async fn terminate(&mut self, id: &str, timeout: Duration) -> ExitStatus {
        let mut node = self.take(id);
        let status = node.try_terminate(timeout).await;
        self.ended.push(node);
        status.unwrap_or_else(|error| panic!("{error}"))
    }

    /// SIGTERMs every running node at once and waits up to `timeout` for each; the
    /// ids of those that did not exit cleanly by themselves (they are killed).
    pub async fn terminate_all(&mut self, timeout: Duration) -> Vec<String> {
        let mut unclean = Vec::new();
        let mut stopping = tokio::task::JoinSet::new();
        for mut node in self.running.drain(..) {
            stopping.spawn(async move {
                let clean = node
                    .try_terminate(timeout)
                    .await
                    .is_ok_and(|status| status.success());
                (node, clean)
            });
        }
        while let Some(stopped) = stopping.join_next().await {
            match stopped {
                Ok((node, clean)) => {
                    if !clean {
                        unclean.push(node.id().to_owned());
                    }
                    self.ended.push(node);
                }
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
        unclean.sort();
        unclean
    }

    /// SIGKILLs every running node.
    pub async fn kill_all(&mut self) {
        for mut node in self.running.drain(..) {
            node.kill().await;
            self.ended.push(node);
        }
    }

    /// Moves nodes that exited by themselves to the ended ones; their ids.
    pub fn reap(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for mut node in std::mem::take(&mut self.running) {
            if node.try_exit().is_some() {
                exited.push(node.id().to_owned());
                self.ended.push(node);
            } else {
                self.running.push(node);
            }
        }
        exited
    }

    /// What a supervisor (compose's restart policy, systemd) does: every node that
    /// exited by itself is started again with the same command and config. Returns
    /// the ids restarted.
    ///
    /// # Panics
    ///
    /// When a node does not start again (with the end of its log).
    pub async fn restart_exited(&mut self) -> Vec<String> {
        let exited = self.reap();
        for id in &exited {
            let ended = self
                .ended
                .iter()
                .rev()
                .find(|node| node.id() == id)
                .expect("a reaped node is among the ended");
            let again = ended
                .start_again()
                .await
                .unwrap_or_else(|error| panic!("restarting {id}: {error}"));
            self.running.push(again);
        }
        exited
    }

    fn take(&mut self, id: &str) -> NodeProcess {
        let index = self
            .running
            .iter()
            .position(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no running node {id}"));
        self.running.remove(index)
    }

    /// The end of every node's log, running and ended.
    pub fn log_tails(&self) -> String {
        self.running
            .iter()
            .chain(&self.ended)
            .map(|node| node.log_tail(TAIL_LINES))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
