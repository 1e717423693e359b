//! SIGTERM and SIGINT (Ctrl-C) ask a node to drain; a second one stops it at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `drain` at the first SIGTERM or SIGINT. At the second, exits the process
/// with status 130: whoever sent it wants the node gone now, and leases expire anyway.
pub async fn drain_on_signal(drain: CancellationToken) {
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
