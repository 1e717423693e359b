//! SIGTERM and SIGINT (Ctrl-C) ask a node to drain; a second one stops it at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or SIGINT: give it to a node runner as its
/// shutdown, and the node drains (hands every lease over) before `run` returns. At the
/// second signal the process exits with status 130: whoever sent it wants the node gone
/// now, and leases expire anyway.
///
/// # Panics
///
/// Outside a tokio runtime (it spawns the task that waits for the signals).
pub fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(drain_on_signal(shutdown.clone()));
    shutdown
}

async fn drain_on_signal(drain: CancellationToken) {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the node with SIGKILL");
        return;
    };
    for round in 0..2 {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        if round == 0 {
            tracing::info!(
                signal = name,
                "draining: handing every lease over, then exiting"
            );
            drain.cancel();
        } else {
            tracing::warn!(
                signal = name,
                "second signal: exiting without finishing the drain"
            );
            std::process::exit(130);
        }
    }
}
