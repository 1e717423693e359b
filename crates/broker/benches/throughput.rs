//! Confirmed-publish and consume throughput of `Publisher` and `StreamReader`, each as a
//! ratio to a bare lapin loop doing the same work (same window, same prefetch, same
//! stream) in the same run.
//!
//! `cargo bench -p shardmesh-broker --bench throughput` against the broker at
//! `SHARDMESH_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`);
//! `BENCH_MESSAGES` sets the messages per run (default 10,000), `BENCH_ROUNDS` the
//! alternating rounds per figure (default 10). Each side's runs all use one message
//! size and the same stream; the ratios compare their throughput over all rounds.

#![allow(missing_docs, clippy::cast_precision_loss)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shardmesh_broker::{
    BrokerConfig, BrokerUrl, Outgoing, Publisher, StartAt, StreamId, StreamReader, Topology,
};
use tokio_util::sync::CancellationToken;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = shardmesh_harness::require_broker().await;
    let messages = env_number("BENCH_MESSAGES", 10_000);
    let rounds = env_number("BENCH_ROUNDS", 10);
    let config = BrokerConfig {
        url: BrokerUrl::new(url.clone()),
        ..BrokerConfig::default()
    };
    println!(
        "{messages} messages per run, {rounds} alternating rounds, window {}, prefetch {}",
        config.confirm_window, config.prefetch
    );
    println!(
        "{:<16} {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9}",
        "msg/s",
        "bare all",
        "ours all",
        "ratio",
        "bare med",
        "ours med",
        "ratio",
        "bare µs",
        "ours µs"
    );
    for size in [200usize, 2048] {
        let cluster = format!("bench-{}-{size}", std::process::id());
        let topology = Topology::new(&cluster, 1, &config).expect("topology");
        topology
            .declare(&config)
            .await
            .expect("declare (is the broker running?)");
        let queue = topology.stream_name(&StreamId::Events(0));
        let payload = vec![0x5a_u8; size];

        let mut bare = Vec::new();
        let mut ours = Vec::new();
        for round in 0..rounds {
            // Alternate who goes first so a warming broker favours neither.
            if round % 2 == 0 {
                bare.push(bare_publish(&url, &topology, &queue, &payload, messages, &config).await);
                ours.push(our_publish(&config, &topology, &payload, messages).await);
            } else {
                ours.push(our_publish(&config, &topology, &payload, messages).await);
                bare.push(bare_publish(&url, &topology, &queue, &payload, messages, &config).await);
            }
        }
        report(&format!("publish {size} B"), &bare, &ours);

        let mut bare = Vec::new();
        let mut ours = Vec::new();
        for round in 0..rounds {
            if round % 2 == 0 {
                bare.push(bare_consume(&url, &queue, messages, config.prefetch).await);
                ours.push(our_consume(&config, &topology, messages).await);
            } else {
                ours.push(our_consume(&config, &topology, messages).await);
                bare.push(bare_consume(&url, &queue, messages, config.prefetch).await);
            }
        }
        report(&format!("consume {size} B"), &bare, &ours);
        topology.delete(&config).await.expect("delete");
    }
}

/// Prints, per side, the throughput over all rounds together (total messages / total
/// time), the median round, and the client CPU time per message. Rounds alternate
/// between the sides, so other work on a shared machine slows both alike.
fn report(case: &str, bare: &[Sample], ours: &[Sample]) {
    let overall = |samples: &[Sample]| {
        samples.len() as f64 / samples.iter().map(|sample| 1.0 / sample.rate).sum::<f64>()
    };
    let median = |samples: &[Sample]| {
        let mut rates: Vec<f64> = samples.iter().map(|sample| sample.rate).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let cpu = |samples: &[Sample]| {
        samples
            .iter()
            .map(|sample| sample.cpu_us_per_message)
            .sum::<f64>()
            / samples.len() as f64
    };
    let (bare_all, ours_all) = (overall(bare), overall(ours));
    let (bare_med, ours_med) = (median(bare), median(ours));
    let (bare_cpu, ours_cpu) = (cpu(bare), cpu(ours));
    println!(
        "{case:<16} {bare_all:>9.0} {ours_all:>9.0} {:>6.3} | {bare_med:>9.0} {ours_med:>9.0} {:>6.3} | {bare_cpu:>9.1} {ours_cpu:>9.1}",
        ours_all / bare_all,
        ours_med / bare_med,
    );
}

/// One run: throughput, and this process's CPU time per message (broker excluded),
/// which other work on the machine barely disturbs.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    cpu_us_per_message: f64,
}

struct Clock {
    wall: Instant,
    cpu_ticks: u64,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu_ticks: cpu_ticks(),
        }
    }

    fn stop(&self, messages: usize) -> Sample {
        let elapsed = self.wall.elapsed();
        // Linux reports CPU time in clock ticks of 10 ms.
        let cpu = Duration::from_millis((cpu_ticks() - self.cpu_ticks) * 10);
        Sample {
            rate: messages as f64 / elapsed.as_secs_f64(),
            cpu_us_per_message: cpu.as_secs_f64() * 1e6 / messages as f64,
        }
    }
}

/// User + system CPU ticks of this process, from `/proc/self/stat`.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

async fn bare_publish(
    url: &str,
    topology: &Topology,
    queue: &str,
    payload: &[u8],
    messages: usize,
    config: &BrokerConfig,
) -> Sample {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    arguments.insert(
        "x-max-age".into(),
        AMQPValue::LongString(config.max_age.as_str().into()),
    );
    arguments.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(i64::try_from(config.max_length_bytes).unwrap()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .unwrap();
    let _ = topology;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let window = config.confirm_window as usize;
    let mut in_flight = VecDeque::with_capacity(window);
    let started = Clock::start();
    for _ in 0..messages {
        if in_flight.len() >= window {
            let confirm: lapin::PublisherConfirm = in_flight.pop_front().unwrap();
            assert!(confirm.await.unwrap().is_ack());
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        in_flight.push_back(confirm);
    }
    for confirm in in_flight {
        assert!(confirm.await.unwrap().is_ack());
    }
    let sample = started.stop(messages);
    connection.close(200, "done".into()).await.unwrap();
    sample
}

async fn our_publish(
    config: &BrokerConfig,
    topology: &Topology,
    payload: &[u8],
    messages: usize,
) -> Sample {
    let mut publisher = Publisher::connect(config, topology, CancellationToken::new())
        .await
        .unwrap();
    let started = Clock::start();
    for seq in 0..messages as u64 {
        publisher
            .publish(Outgoing {
                stream: StreamId::Events(0),
                source: 0,
                seq,
                payload: payload.to_vec(),
            })
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let sample = started.stop(messages);
    assert!(publisher.take_events().is_empty());
    assert_eq!(publisher.confirmed(0), Some(messages as u64 - 1));
    publisher.close().await;
    sample
}

async fn bare_consume(url: &str, queue: &str, messages: usize, prefetch: u16) -> Sample {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .unwrap();
    let ack_every = u64::from(prefetch / 2);
    let started = Clock::start();
    let mut last = 0;
    for received in 1..=messages as u64 {
        let delivery = consumer.next().await.unwrap().unwrap();
        let headers = delivery.properties.headers().as_ref().unwrap();
        if let Some(AMQPValue::LongLongInt(offset)) = headers.inner().get("x-stream-offset") {
            last = *offset;
        }
        if received % ack_every == 0 {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
    }
    let sample = started.stop(messages);
    assert!(last >= 0);
    connection.close(200, "done".into()).await.unwrap();
    sample
}

async fn our_consume(config: &BrokerConfig, topology: &Topology, messages: usize) -> Sample {
    let mut reader = StreamReader::connect(
        config,
        topology,
        StreamId::Events(0),
        StartAt::First,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let started = Clock::start();
    for _ in 0..messages {
        reader.next().await.unwrap();
    }
    let sample = started.stop(messages);
    reader.close().await;
    sample
}
