//! Real twilight-gateway shards against the simulator: identify, READY, the
//! `GUILD_CREATE` burst, every traffic kind, resume after chaos, op 7 / op 9, fatal
//! closes, and exact agreement with the ground truth.

mod common;

use common::{Client, shard, shard_with, start, unpaced, wait_until};
use shardmesh_sim::{Chaos, EventKind, SimConfig};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{Intents, ShardState};

#[tokio::test]
async fn identify_gets_ready_then_one_guild_create_per_guild() {
    let sim = start(SimConfig {
        shards: 2,
        guilds: 7,
        ..SimConfig::default()
    })
    .await;
    let mut client = shard(&sim, 1, 2);
    client
        .pump_until("READY + 3 GUILD_CREATE", |c| c.count("GUILD_CREATE") == 3)
        .await;

    let kinds: Vec<&str> = client.received.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["READY", "GUILD_CREATE", "GUILD_CREATE", "GUILD_CREATE"]
    );
    let expected: Vec<u64> = sim
        .guilds()
        .iter()
        .filter(|g| g.shard == 1)
        .map(|g| g.id)
        .collect();
    let got: Vec<u64> = client.received[1..].iter().map(|s| s.id).collect();
    assert_eq!(got, expected);
    assert!(matches!(client.shard.state(), ShardState::Active));
    assert_eq!(client.shard.session().unwrap().id(), client.session);

    let stats = sim.stats();
    assert_eq!(stats.identifies, 1);
    assert_eq!(stats.session_start_remaining, stats.session_start_total - 1);
    assert_eq!(stats.connections, 1);
    client.assert_matches_truth(&sim, 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn every_traffic_kind_parses_and_matches_ground_truth() {
    let sim = start(SimConfig {
        guilds: 5,
        rate: 2_000.0,
        seed: 11,
        ..SimConfig::default()
    })
    .await;
    let mut client = shard(&sim, 0, 1);
    let kinds = EventKind::MIX.map(|(kind, _)| kind.as_str());
    client
        .pump_until("every traffic kind", |c| {
            kinds.iter().all(|k| c.count(k) >= 3)
        })
        .await;
    client.assert_matches_truth(&sim, 0).await;
    client.assert_no_gap_no_repeat();
    let ids: std::collections::HashSet<u64> = client
        .received
        .iter()
        .filter(|s| kinds.contains(&s.kind.as_str()))
        .map(|s| s.id)
        .collect();
    let traffic = client
        .received
        .iter()
        .filter(|s| kinds.contains(&s.kind.as_str()))
        .count();
    assert_eq!(ids.len(), traffic, "traffic ids are unique");
    sim.shutdown().await;
}

#[tokio::test]
async fn intents_filter_what_a_session_receives() {
    let sim = start(SimConfig {
        guilds: 3,
        rate: 2_000.0,
        ..SimConfig::default()
    })
    .await;
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES;
    let mut client = shard_with(&sim, 0, 1, intents, common::instant_queue());
    client
        .pump_until("some messages", |c| c.count("MESSAGE_CREATE") >= 20)
        .await;
    for kind in ["TYPING_START", "PRESENCE_UPDATE", "GUILD_MEMBER_ADD"] {
        assert_eq!(
            client.count(kind),
            0,
            "{kind} needs an intent the shard lacks"
        );
    }
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

/// Runs traffic, applies `chaos` once the shard is live, and reads until the shard
/// resumed and got more traffic; returns the client for checks.
async fn survive(
    chaos: Chaos,
    config: SimConfig,
) -> (shardmesh_sim::Simulator, Client<InMemoryQueue>) {
    let sim = start(SimConfig {
        guilds: 4,
        rate: 500.0,
        ..config
    })
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("traffic", |c| c.received.len() >= 30)
        .await;
    assert_eq!(sim.chaos(0, chaos), 1);
    client
        .pump_until("RESUMED", |c| c.count("RESUMED") == 1)
        .await;
    let resumed_at = client.received.len();
    client
        .pump_until("traffic after RESUMED", |c| {
            c.received.len() >= resumed_at + 30
        })
        .await;
    (sim, client)
}

#[tokio::test]
async fn dropped_connection_resumes_with_no_gap_and_no_repeat() {
    let (sim, mut client) = survive(Chaos::Drop, SimConfig::default()).await;
    client.assert_no_gap_no_repeat();
    assert_eq!(client.count("READY"), 1, "no second session");
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (1, 1));
    client.assert_matches_truth(&sim, 0).await;
    let records = sim.log_since(0, usize::MAX).records;
    let connections: std::collections::BTreeSet<u64> =
        records.iter().map(|r| r.connection).collect();
    assert_eq!(
        connections.len(),
        2,
        "one connection before the drop, one after"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dispatches_while_disconnected_are_replayed_on_resume() {
    let sim = start(SimConfig {
        guilds: 2,
        ..SimConfig::default()
    })
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2)
        .await;
    // Hold the shard (stop polling it) while its connection is dropped and traffic
    // flows: the session collects dispatches while disconnected.
    assert_eq!(sim.chaos(0, Chaos::Drop), 1);
    wait_until("the drop", || sim.stats().connections == 0).await;
    sim.set_rate(1_000.0);
    wait_until("traffic for the absent shard", || {
        sim.stats().generated >= 50
    })
    .await;
    sim.stop_traffic();
    client
        .pump_until("RESUMED", |c| c.count("RESUMED") == 1)
        .await;
    client.assert_matches_truth(&sim, 0).await;
    client.assert_no_gap_no_repeat();
    let records = sim.log_since(0, usize::MAX).records;
    let replayed = records.iter().filter(|r| r.replay).count();
    assert!(
        replayed >= 50,
        "the missed dispatches came as a replay ({replayed})"
    );
    let resumed = records
        .iter()
        .position(|r| r.kind == EventKind::Resumed)
        .unwrap();
    assert!(
        records[..resumed]
            .iter()
            .rev()
            .take(replayed)
            .all(|r| r.replay)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn op7_reconnect_resumes_the_same_session() {
    let (sim, mut client) = survive(Chaos::Reconnect, SimConfig::default()).await;
    assert_eq!(client.reconnects, 1);
    assert_eq!(client.count("READY"), 1);
    client.assert_no_gap_no_repeat();
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn op9_resumable_resumes_the_same_session() {
    let chaos = Chaos::InvalidSession { resumable: true };
    let (sim, mut client) = survive(chaos, SimConfig::default()).await;
    assert_eq!(client.invalid_sessions, [true]);
    assert_eq!(client.count("READY"), 1);
    client.assert_no_gap_no_repeat();
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn op9_not_resumable_starts_a_new_session_by_identify() {
    let sim = start(unpaced(SimConfig {
        guilds: 2,
        rate: 500.0,
        ..SimConfig::default()
    }))
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("traffic", |c| c.received.len() >= 20)
        .await;
    let first = client.session.clone();
    assert_eq!(sim.chaos(0, Chaos::InvalidSession { resumable: false }), 1);
    client
        .pump_until("a second READY", |c| c.count("READY") == 2)
        .await;
    assert_ne!(client.session, first);
    assert_eq!(client.invalid_sessions, [false]);
    assert_eq!(client.count("RESUMED"), 0);
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (2, 0));
    client.assert_no_gap_no_repeat();
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_session_cannot_resume_and_the_shard_identifies_again() {
    let sim = start(unpaced(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    }))
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 1)
        .await;
    assert_eq!(sim.chaos(0, Chaos::Expire), 1);
    client
        .pump_until("a second READY", |c| c.count("READY") == 2)
        .await;
    assert_eq!(client.closes.first(), Some(&Some(4009)));
    assert_eq!(client.invalid_sessions, [false], "the resume was refused");
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sessions_expire_after_the_resume_window() {
    let sim = start(unpaced(SimConfig {
        guilds: 1,
        resume_window_ms: 200,
        ..SimConfig::default()
    }))
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 1)
        .await;
    sim.chaos(0, Chaos::Drop);
    wait_until("the session to expire", || sim.stats().sessions == 0).await;
    client
        .pump_until("a new session", |c| c.count("READY") == 2)
        .await;
    assert_eq!(client.invalid_sessions, [false], "the resume was refused");
    sim.shutdown().await;
}

#[tokio::test]
async fn client_close_4000_keeps_the_session_and_1000_ends_it() {
    let sim = start(unpaced(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    }))
    .await;
    let mut keep = shard(&sim, 0, 1);
    keep.pump_until("READY burst", |c| c.count("GUILD_CREATE") == 1)
        .await;
    keep.shard.close(twilight_gateway::CloseFrame::RESUME);
    keep.pump_until("close echo", |c| !c.closes.is_empty())
        .await;
    wait_until("the connection to end", || sim.stats().connections == 0).await;
    assert_eq!(sim.stats().sessions, 1, "4000 keeps the session resumable");

    let mut end = shard(&sim, 0, 1);
    end.pump_until("READY burst", |c| c.count("GUILD_CREATE") == 1)
        .await;
    assert_eq!(sim.stats().sessions, 2);
    end.shard.close(twilight_gateway::CloseFrame::NORMAL);
    end.pump_until("close echo", |c| !c.closes.is_empty()).await;
    wait_until("the second session to end", || sim.stats().sessions == 1).await;
    sim.shutdown().await;
}

async fn fatal_close(
    config: SimConfig,
    id: u32,
    total: u32,
    intents: Intents,
    token: Option<&str>,
) -> Vec<Option<u16>> {
    let sim = start(config).await;
    let mut client = shard_with(&sim, id, total, intents, common::instant_queue());
    if let Some(token) = token {
        let config = twilight_gateway::ConfigBuilder::new(token.to_owned(), intents)
            .proxy_url(sim.gateway_url().to_owned())
            .queue(common::instant_queue())
            .build();
        client.shard =
            twilight_gateway::Shard::with_config(twilight_gateway::ShardId::new(id, total), config);
    }
    client.pump_to_end().await;
    assert!(matches!(client.shard.state(), ShardState::FatallyClosed));
    assert_eq!(sim.stats().sessions, 0);
    sim.shutdown().await;
    client.closes
}

#[tokio::test]
async fn invalid_token_is_closed_with_4004() {
    let closes = fatal_close(SimConfig::default(), 0, 1, Intents::all(), Some("wrong")).await;
    assert_eq!(closes, [Some(4004)]);
}

#[tokio::test]
async fn bad_shard_is_closed_with_4010() {
    let config = SimConfig {
        shards: 2,
        ..SimConfig::default()
    };
    // Another count than the configured one is a re-sharding bot's new set (accepted,
    // `tests/resharding.rs`); a count past Discord's range is not. twilight cannot
    // send `id >= count`: the raw client's case is in `tests/resharding.rs`.
    assert_eq!(
        fatal_close(config, 0, 65_536, Intents::all(), None).await,
        [Some(4010)]
    );
}

#[tokio::test]
async fn invalid_intents_are_closed_with_4013_and_disallowed_with_4014() {
    let invalid = Intents::from_bits_retain(1 << 40);
    assert_eq!(
        fatal_close(SimConfig::default(), 0, 1, invalid, None).await,
        [Some(4013)]
    );
    let config = SimConfig {
        privileged_intents: 0,
        ..SimConfig::default()
    };
    let members = Intents::GUILDS | Intents::GUILD_MEMBERS;
    assert_eq!(fatal_close(config, 0, 1, members, None).await, [Some(4014)]);
}

#[tokio::test]
async fn hand_over_to_a_new_shard_resumes_with_no_gap_and_replays_from_the_saved_seq() {
    let sim = start(SimConfig {
        guilds: 2,
        rate: 500.0,
        ..SimConfig::default()
    })
    .await;
    let mut old = shard(&sim, 0, 1);
    old.pump_until("traffic", |c| c.received.len() >= 40).await;
    old.shard.close(twilight_gateway::CloseFrame::RESUME);
    old.pump_until("the close echo", |c| !c.closes.is_empty())
        .await;
    let session = old.shard.session().unwrap().clone();
    let resume_url = old.shard.resume_url().unwrap().to_owned();
    assert_eq!(resume_url, sim.gateway_url());
    drop(old.shard);
    let last = old
        .received
        .iter()
        .filter(|s| s.kind != "RESUMED")
        .map(|s| s.seq)
        .max()
        .unwrap();
    assert_eq!(session.sequence(), last);

    // The new owner resumes from an older, "confirmed" seq: the overlap is replayed.
    let saved = last - 5;
    let config = twilight_gateway::ConfigBuilder::new("sim-token".into(), Intents::all())
        .proxy_url(sim.gateway_url().to_owned())
        .session(twilight_gateway::Session::new(
            saved,
            session.id().to_owned(),
        ))
        .resume_url(resume_url)
        .queue(common::instant_queue())
        .build();
    let mut new = shard(&sim, 0, 1);
    new.shard = twilight_gateway::Shard::with_config(twilight_gateway::ShardId::ONE, config);
    new.session = session.id().to_owned();
    new.earlier.clone_from(&old.received);
    new.pump_until("RESUMED and traffic", |c| {
        c.count("RESUMED") == 1 && c.received.len() >= 40
    })
    .await;
    assert_eq!(
        new.received[0].seq,
        saved + 1,
        "replay starts after the saved seq"
    );
    assert_eq!(new.count("READY"), 0, "no IDENTIFY spent");
    assert_eq!(sim.stats().identifies, 1);

    new.assert_matches_truth(&sim, 0).await;
    let mut all = old.received.clone();
    all.extend(new.received.iter().cloned());
    assert_eq!(
        common::truth(&sim, 0),
        all,
        "the log is the old connection then the new one"
    );
    let records = sim.log_since(0, usize::MAX).records;
    let replayed: Vec<u64> = records.iter().filter(|r| r.replay).map(|r| r.seq).collect();
    assert!(replayed.starts_with(&[saved + 1, saved + 2, saved + 3, saved + 4, saved + 5]));
    // Deduplicated on seq, the two connections saw every dispatch once, in order.
    let mut seqs: Vec<u64> = all
        .iter()
        .filter(|s| s.kind != "RESUMED")
        .map(|s| s.seq)
        .collect();
    seqs.dedup();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    sim.shutdown().await;
}
