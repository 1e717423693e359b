//! A handler that fails every 10th event (the sink answers 500 to every event whose seq
//! is a multiple of 10, on every attempt): each of those is tried
//! `handler_attempts` times and then lands in the group's dead-letter stream with the
//! error, exactly once; every other event is handled exactly once, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::dead_letters::read_dead_letters;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::{FailRule, Sink, SinkEvent};
use shardmesh_tests::{ConsumerTuning, Id, TestCluster, Timings, Truth, broker_url, sim_config};
use tokio::time::Instant;

const SHARDS: u32 = 16;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "a";

fn fails(seq: u64) -> bool {
    seq.is_multiple_of(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn every_tenth_event_failing_ends_in_the_dead_letter_stream_and_the_rest_once() {
    let started = Instant::now();
    let settings = ConsumerTuning::PER_EVENT;
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("cdlq", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters(GROUP);
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let rule: FailRule = Arc::new(|event: &SinkEvent| fails(event.seq));
    let sink = Sink::start(Some(rule)).await;
    let mut consumers = ConsumerNodes::new(&cluster, sink, settings, &broker_url());
    consumers.start(&[("c1", GROUP), ("c2", GROUP)]).await;
    consumers.wait_settled(GROUP, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 1_000, WAIT)
        .await;
    cluster.sim.stop_traffic();

    // Every passing event handled; the truth is re-read until then, so the last events
    // generated as traffic stopped are in it.
    wait_caught_up(
        &cluster.sim,
        consumers.sink(),
        &[GROUP],
        Upto::AllWhere(&|id: &Id| !fails(id.2)),
        WAIT,
    )
    .await;
    let sent = Truth::read(&cluster.sim).dispatches;
    let (failing, passing): (BTreeMap<Id, _>, BTreeMap<Id, _>) = sent
        .iter()
        .map(|(id, s)| (id.clone(), *s))
        .partition(|(id, _)| fails(id.2));
    assert!(
        failing.len() >= 50,
        "only {} events with seq % 10 == 0 sent",
        failing.len()
    );
    let expected: BTreeSet<Id> = failing.keys().cloned().collect();
    let letters =
        read_dead_letters(&cluster.broker, &cluster.topology, GROUP, &expected, WAIT).await;

    // Each failing event: dead-lettered once, with the HTTP error, after every attempt.
    let mut lettered: BTreeMap<Id, usize> = BTreeMap::new();
    for (offset, letter) in &letters {
        let Some(event) = &letter.event else {
            panic!("dead letter at offset {offset} carries no event: {letter:?}");
        };
        let id = (event.shard, event.session.clone(), event.seq);
        assert!(
            expected.contains(&id),
            "expected dead letters only for seq % 10 == 0; seen {id:?} at offset {offset} \
             (error {:?})",
            letter.error
        );
        assert!(
            letter.error.contains("500"),
            "expected the dead letter's error to name the HTTP status 500; seen {:?} for {id:?}",
            letter.error
        );
        assert_eq!(
            (
                letter.cluster.as_str(),
                letter.group.as_str(),
                letter.attempts
            ),
            (cluster.name.as_str(), GROUP, settings.handler_attempts),
            "dead letter of {id:?}: (cluster, group, attempts)"
        );
        assert_eq!(
            letter.partition,
            event.shard % PARTITIONS,
            "dead letter of {id:?}: partition"
        );
        *lettered.entry(id).or_default() += 1;
    }
    let twice: Vec<(&Id, &usize)> = lettered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "expected each failing event dead-lettered once; seen several letters for {twice:?}"
    );
    let posts = consumers.sink().posts();
    let mut attempts: BTreeMap<Id, usize> = BTreeMap::new();
    for post in &posts {
        let id = post.event.id();
        if fails(id.2) {
            assert_eq!(post.status, 500, "post #{} of {id:?}", post.index);
            *attempts.entry(id).or_default() += 1;
        }
    }
    let short: Vec<(&Id, usize)> = expected
        .iter()
        .map(|id| (id, attempts.get(id).copied().unwrap_or(0)))
        .filter(|(_, tries)| *tries < settings.handler_attempts as usize)
        .collect();
    assert!(
        short.is_empty(),
        "expected each failing event posted at least {} times; seen (id, posts) {:?}",
        settings.handler_attempts,
        &short[..short.len().min(10)]
    );

    // Everything else: exactly once, in order.
    let report = GroupReport::new(GROUP, PARTITIONS, &passing, &posts);
    println!(
        "dlq: {} dead letters for {} failing events; {} (took {:?})",
        letters.len(),
        failing.len(),
        report.summary(),
        started.elapsed()
    );
    report.assert_complete();
    report.assert_no_repeats();
    assert!(consumers.sink().malformed().is_empty());
    let counted = consumers
        .count_sum(GROUP, "shardmesh_consumer_dead_lettered_total")
        .await
        .unwrap();
    assert_eq!(
        counted,
        u64::try_from(letters.len()).unwrap(),
        "shardmesh_consumer_dead_lettered_total over the group's nodes against the letters in \
         the stream"
    );
    drop(consumers);
    cluster.finish().await;
}
