//! Topology is declared idempotently, conflicts are reported, and it can be deleted.

mod support;

use shardmesh_broker::{BrokerConfig, Error, Publisher, Topology};
use support::{shared_broker, unique_name};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn redeclaring_is_idempotent_and_delete_removes_everything() {
    let config = shared_broker().await;
    let topology = Topology::new(&unique_name("topo"), 2, &config)
        .unwrap()
        .with_dead_letters("bots");
    topology.declare(&config).await.unwrap();
    topology.declare(&config).await.unwrap();
    for stream in topology.streams() {
        Topology::queue_exists(&config, &topology.stream_name(&stream))
            .await
            .unwrap();
    }
    topology.delete(&config).await.unwrap();
    for stream in topology.streams() {
        let name = topology.stream_name(&stream);
        match Topology::queue_exists(&config, &name).await {
            Err(Error::NotFound { name: missing }) => assert_eq!(missing, name),
            other => panic!("{name} still exists: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_with_other_retention_is_reported_not_used() {
    let config = shared_broker().await;
    let cluster = unique_name("topo-conflict");
    let existing = Topology::new(&cluster, 1, &config).unwrap();
    existing.declare(&config).await.unwrap();

    let other = BrokerConfig {
        max_age: "7D".into(),
        ..config.clone()
    };
    let conflicting = Topology::new(&cluster, 1, &other).unwrap();
    match Publisher::connect(&other, &conflicting, CancellationToken::new()).await {
        Err(Error::InequivalentArgument {
            queue, argument, ..
        }) => {
            assert_eq!(queue, format!("shardmesh.{cluster}.events.0"));
            assert_eq!(argument, "x-max-age");
        }
        other => panic!("expected an inequivalent-argument error, got {other:?}"),
    }
    existing.delete(&config).await.unwrap();
}

#[tokio::test]
async fn amqps_speaks_tls_so_a_plain_amqp_port_refuses_the_handshake() {
    // No TLS broker runs here; what this proves is that an amqps URL is accepted and
    // dialled with TLS (the plain port cannot complete the handshake), not refused.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = shared_broker().await;
    let amqps = BrokerConfig {
        url: shardmesh_broker::BrokerUrl::new(
            plain
                .url
                .expose()
                .replacen("amqp://", "amqps://", 1)
                .replacen("@localhost", "@127.0.0.1", 1),
        ),
        connect_timeout_ms: 2_000,
        ..plain
    };
    amqps.validate().unwrap();
    let topology = Topology::new(&unique_name("tls"), 1, &amqps).unwrap();
    match Publisher::connect(&amqps, &topology, CancellationToken::new()).await {
        Err(error @ Error::Unreachable { .. }) => {
            assert!(!error.to_string().contains("guest:guest"), "{error}");
        }
        other => panic!("an amqps connection to a plain AMQP port must fail: {other:?}"),
    }
}
