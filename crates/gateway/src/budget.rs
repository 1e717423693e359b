//! The cluster's identify budget as the store last gave it, read every
//! [`REFRESH`] for `/metrics` (a scrape must not wait for the store).

use std::sync::Arc;
use std::time::Duration;

use shardmesh_store::{IdentifyBudget, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the budget is read again: it moves by one per IDENTIFY.
const REFRESH: Duration = Duration::from_secs(10);

/// Spawns the reader; it stops with `stop`. `None` until a gateway node recorded
/// Discord's figures (or while the store cannot be read: the last reading stays).
pub(crate) fn watch<S: Store + 'static>(
    store: Arc<S>,
    stop: CancellationToken,
) -> watch::Receiver<Option<IdentifyBudget>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            match store.identify_budget().await {
                Ok(budget) => {
                    sender.send_replace(budget);
                }
                Err(error) => tracing::debug!(%error, "identify budget not read"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    });
    receiver
}
