//! Waiting on conditions with deadlines instead of sleeping: a test polls what it can
//! observe (the simulator, the store, the nodes' endpoints) until it holds.

use std::time::Duration;

use tokio::time::Instant;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Ok`, and returns that value.
///
/// `probe` returns `Err(seen)` describing what it observes while the condition does not
/// hold yet; the last such description goes into the failure message.
///
/// # Panics
///
/// After `timeout`, with `what` (the expectation) and the last `seen`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}\n  expected: {what}\n  last seen: {seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the synchronous `probe` until it returns `Ok`; see [`eventually`].
///
/// # Panics
///
/// After `timeout`, with `what` and the last `seen`.
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    eventually(what, timeout, async || probe()).await
}

/// Polls `condition` until it holds: for conditions with nothing worth reporting while
/// they do not (a flag, a count reached); see [`wait_until`] for ones that have.
///
/// # Panics
///
/// After `timeout`, with `what`.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    wait_until(what, timeout, || {
        if condition() {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
}

/// Awaits `step`, failing the test if it takes longer than `timeout`: for steps that
/// should end on their own (a stop, a close, a join) and would otherwise hang a test
/// without a word.
///
/// # Panics
///
/// After `timeout`, naming `what`.
pub async fn within<T>(what: &str, timeout: Duration, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(timeout, step)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}

/// Checks that `probe` keeps returning `Ok` for the whole of `period`: for promises of
/// the kind "nothing more happens", which only a period of watching can show.
///
/// # Panics
///
/// As soon as `probe` returns `Err(seen)`, with `what` and `seen`.
pub async fn holds_for(
    what: &str,
    period: Duration,
    mut probe: impl AsyncFnMut() -> Result<(), String>,
) {
    let end = Instant::now() + period;
    loop {
        if let Err(seen) = probe().await {
            panic!("expected for {period:?}: {what}\n  but saw: {seen}");
        }
        if Instant::now() >= end {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}
