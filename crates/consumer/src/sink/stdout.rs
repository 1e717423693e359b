//! `--sink stdout`: JSON lines, one per event, for a bot reading the node's output.

use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

/// Writes whole lines: partitions run in parallel, and a line must never interleave
/// with another.
#[derive(Debug, Default)]
pub struct StdoutSink {
    out: Mutex<Option<tokio::io::Stdout>>,
}

impl StdoutSink {
    /// Writes `json` and a newline, and flushes: the event counts as handled only once
    /// the reader's pipe has it.
    ///
    /// # Errors
    ///
    /// When stdout is closed.
    pub async fn write(&self, mut json: String) -> anyhow::Result<()> {
        json.push('\n');
        let mut out = self.out.lock().await;
        let out = out.get_or_insert_with(tokio::io::stdout);
        out.write_all(json.as_bytes()).await?;
        out.flush().await?;
        Ok(())
    }
}
