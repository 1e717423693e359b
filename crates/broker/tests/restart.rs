//! A broker restart loses no confirmed message; publisher and reader recover on their own.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_broker::{Publisher, StartAt, StreamId, StreamReader};
use support::{PrivateBroker, config_for, publish_all, topology, wait_for, within};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_no_confirmed_message_and_both_sides_recover() {
    /// Messages published after the broker is back.
    const AFTER: u64 = 3_000;
    /// Long enough for any single step on a loaded machine; a hang fails with its name.
    const STEP: Duration = Duration::from_secs(120);
    let mut broker = within("private broker start", STEP, PrivateBroker::start())
        .await
        .unwrap();
    let config = config_for(&broker.url());
    let topology = topology("restart", 1, &config);
    let shutdown = CancellationToken::new();

    let mut publisher = within(
        "publisher connect",
        STEP,
        Publisher::connect(&config, &topology, shutdown.clone()),
    )
    .await
    .unwrap();
    let mut reader = within(
        "reader connect",
        STEP,
        StreamReader::connect(
            &config,
            &topology,
            StreamId::Events(0),
            StartAt::First,
            shutdown.clone(),
        ),
    )
    .await
    .unwrap();

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let reading = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut last = None;
            loop {
                match reader.next_batch().await {
                    Ok((offset, batch)) => {
                        assert!(
                            last.is_none_or(|last| offset == last + 1),
                            "offset {offset} after {last:?}"
                        );
                        last = Some(offset);
                        seen.lock().unwrap().insert(support::seq_of(&batch));
                    }
                    Err(shardmesh_broker::Error::Cancelled) => return reader,
                    Err(error) => panic!("reader failed: {error}"),
                }
            }
        }
    });
    let progress = Arc::new(AtomicU64::new(0));
    let stop_at = Arc::new(AtomicU64::new(u64::MAX));
    let publishing = tokio::spawn({
        let (progress, stop_at) = (progress.clone(), stop_at.clone());
        async move {
            let run = publish_all(&mut publisher, u64::MAX, 200, |seq| {
                progress.store(seq, Ordering::Relaxed);
                seq < stop_at.load(Ordering::Relaxed)
            })
            .await;
            (publisher, run)
        }
    });

    wait_for("3,000 messages published", Duration::from_secs(60), || {
        progress.load(Ordering::Relaxed) >= 3_000
    })
    .await;
    within("broker stop", STEP, broker.stop()).await.unwrap();
    within("broker restart", STEP, broker.restart())
        .await
        .unwrap();
    stop_at.store(progress.load(Ordering::Relaxed) + AFTER, Ordering::Relaxed);

    let (publisher, run) = within("publishing after the restart", STEP, publishing)
        .await
        .unwrap();
    assert!(run.losses >= 1, "the restart was not noticed");
    wait_for(
        "every confirmed message read back",
        Duration::from_secs(60),
        || seen.lock().unwrap().len() as u64 == run.published,
    )
    .await;
    shutdown.cancel();
    let reader = within("reader stop on shutdown", STEP, reading)
        .await
        .unwrap();
    eprintln!(
        "{} published, {} handed back around the restart",
        run.published,
        run.handed_back.len()
    );
    within("reader close", STEP, reader.close()).await;
    within("publisher close", STEP, publisher.close()).await;
    within("topology delete", STEP, topology.delete(&config))
        .await
        .unwrap();
    within("final broker stop", STEP, broker.stop())
        .await
        .unwrap();
}
