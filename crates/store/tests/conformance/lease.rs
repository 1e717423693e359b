//! Lease checks: mutual exclusion, fencing epochs, expiry, and the state a lease carries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shardmesh_store::{
    Checkpoint, DedupMark, Lease, LeaseGrant, LeaseKey, LeaseState, ShardSession, Store,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{LONG, OpenStore, SHORT, clean_up, fresh, grant_of, unique_cluster, wait_until};

fn session(id: &str, seq: u64) -> LeaseState {
    LeaseState::Shard(ShardSession {
        session_id: id.into(),
        seq,
        resume_url: format!("wss://resume.example/{id}"),
    })
}

fn checkpoint(offset: u64, seq: u64) -> LeaseState {
    let mark = |epoch, session: &str, seq| DedupMark {
        epoch,
        session: session.into(),
        seq,
    };
    LeaseState::Partition(Checkpoint {
        offset: Some(offset),
        marks: BTreeMap::from([(0, mark(3, "s0", seq)), (17, mark(1, "s17", seq * 2))]),
    })
}

fn bots(partition: u32) -> LeaseKey {
    LeaseKey::Partition {
        group: "bots".into(),
        partition,
    }
}

/// Waits until `owner` takes `key` after its current lease lapses, and checks it did not
/// get it before `lease_until` (the store's clock is this host's wall clock).
async fn take_after_expiry(
    store: &impl Store,
    key: &LeaseKey,
    owner: &str,
    duration: Duration,
    held_until: SystemTime,
) -> Lease {
    let lease = wait_until(
        &format!("{owner} takes {key} after it lapses"),
        async || store.acquire(key, owner, duration).await.expect("acquire"),
    )
    .await;
    assert!(
        SystemTime::now() >= held_until,
        "{owner} took {key} before the previous lease lapsed"
    );
    lease
}

/// Rounds of 50 concurrent acquirers (spread over several handles) of one key: each
/// round has exactly one winner, holding the next epoch.
pub async fn one_winner_per_epoch_among_fifty_concurrent_acquirers(open: impl OpenStore) {
    let cluster = unique_cluster("fifty");
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(Arc::new(open.open(cluster.clone()).await));
    }
    let key = LeaseKey::Shard(7);
    for round in 1..=3_u64 {
        let start = Arc::new(Barrier::new(50));
        let mut racers = JoinSet::new();
        for racer in 0..50 {
            let store = Arc::clone(&handles[racer % handles.len()]);
            let (start, key) = (Arc::clone(&start), key.clone());
            racers.spawn(async move {
                start.wait().await;
                let owner = format!("node-{round}-{racer}");
                store.acquire(&key, &owner, LONG).await.expect("acquire")
            });
        }
        let winners: Vec<Lease> = racers.join_all().await.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round} winners: {winners:?}");
        let winner = &winners[0];
        assert_eq!(winner.epoch, round, "round {round} epoch");
        let row = handles[0].lease(&key).await.expect("lease").expect("row");
        assert_eq!(
            (row.owner.as_ref(), row.epoch),
            (winner.owner.as_ref(), round)
        );
        let released = handles[1]
            .release(&grant_of(winner), &LeaseState::Empty)
            .await
            .expect("release");
        assert!(released, "round {round}: the winner could not release");
    }
    clean_up(handles[0].as_ref()).await;
}

/// While a lease is held and unexpired, nobody else (nor its holder) can acquire it.
pub async fn a_held_lease_cannot_be_taken(open: impl OpenStore) {
    let store = fresh(&open, "held").await;
    let key = bots(4);
    let lease = store
        .acquire(&key, "a", LONG)
        .await
        .expect("acquire")
        .expect("a free key is granted");
    assert_eq!(lease.owner.as_deref(), Some("a"));
    assert_eq!(lease.epoch, 1);
    assert_eq!(lease.state, LeaseState::Empty);
    assert!(lease.lease_until > SystemTime::now());
    for owner in ["b", "a"] {
        let taken = store.acquire(&key, owner, LONG).await.expect("acquire");
        assert_eq!(taken, None, "{owner} took a held lease");
    }
    assert_eq!(store.lease(&key).await.expect("lease"), Some(lease));
    clean_up(&store).await;
}

/// Every acquire after a lapse raises the epoch by exactly one.
pub async fn epoch_rises_across_expiry(open: impl OpenStore) {
    let store = fresh(&open, "expiry").await;
    let key = LeaseKey::Shard(1);
    let mut lease = store
        .acquire(&key, "a", SHORT)
        .await
        .expect("acquire")
        .expect("a free key is granted");
    for owner in ["b", "c", "d"] {
        let next = take_after_expiry(&store, &key, owner, SHORT, lease.lease_until).await;
        assert_eq!(next.epoch, lease.epoch + 1, "{owner}'s epoch");
        assert_eq!(next.owner.as_deref(), Some(owner));
        lease = next;
    }
    assert_eq!(lease.epoch, 4);
    clean_up(&store).await;
}

/// A holder whose lease lapsed and was taken cannot renew or release it, and its
/// attempts leave the new holder's row exactly as it was.
pub async fn stale_owner_cannot_renew_or_release(open: impl OpenStore) {
    let store = fresh(&open, "stale").await;
    let key = LeaseKey::Shard(2);
    let old = store
        .acquire(&key, "old", SHORT)
        .await
        .expect("acquire")
        .expect("a free key is granted");
    let new = take_after_expiry(&store, &key, "new", LONG, old.lease_until).await;
    assert_eq!(new.epoch, old.epoch + 1);
    assert!(
        store
            .renew(&grant_of(&new), LONG, &session("new-session", 5))
            .await
            .expect("renew")
    );
    let before = store.lease(&key).await.expect("lease").expect("row");

    let stale = grant_of(&old);
    let forged_epoch = LeaseGrant {
        epoch: old.epoch,
        ..grant_of(&new)
    };
    let forged_owner = LeaseGrant {
        owner: "old".into(),
        ..grant_of(&new)
    };
    for grant in [&stale, &forged_epoch, &forged_owner] {
        let renewed = store
            .renew(grant, LONG, &session("old-session", 99))
            .await
            .expect("renew");
        assert!(!renewed, "{grant:?} renewed a lease it does not hold");
        let released = store
            .release(grant, &session("old-session", 99))
            .await
            .expect("release");
        assert!(!released, "{grant:?} released a lease it does not hold");
    }
    let after = store.lease(&key).await.expect("lease").expect("row");
    assert_eq!(after, before, "a refused write changed the row");
    clean_up(&store).await;
}

/// Release frees the key at once: someone else acquires it immediately with epoch + 1,
/// and the releaser's grant is dead.
pub async fn release_frees_the_key_for_the_next_epoch(open: impl OpenStore) {
    let store = fresh(&open, "release").await;
    let key = bots(0);
    let first = store
        .acquire(&key, "a", LONG)
        .await
        .expect("acquire")
        .expect("a free key is granted");
    assert!(
        store
            .release(&grant_of(&first), &LeaseState::Empty)
            .await
            .expect("release")
    );
    let released = store.lease(&key).await.expect("lease").expect("row");
    assert_eq!(released.owner, None, "a released lease has no owner");
    assert_eq!(released.epoch, first.epoch, "release keeps the epoch");

    let second = store
        .acquire(&key, "b", LONG)
        .await
        .expect("acquire")
        .expect("a released key is granted at once");
    assert_eq!(second.epoch, first.epoch + 1);
    assert_eq!(second.owner.as_deref(), Some("b"));
    let renewed = store
        .renew(&grant_of(&first), LONG, &LeaseState::Empty)
        .await
        .expect("renew");
    assert!(!renewed, "a released grant renewed");
    clean_up(&store).await;
}

/// The session and checkpoint saved by the last renew are what the next owner gets when
/// the holder dies (its lease lapses), and renew pushes `lease_until` forward.
pub async fn state_saved_at_renew_reaches_the_owner_after_expiry(open: impl OpenStore) {
    let store = fresh(&open, "renew_state").await;
    for (key, state) in [
        (LeaseKey::Shard(3), session("abc", 41)),
        (bots(5), checkpoint(1_234, 77)),
    ] {
        let held = store
            .acquire(&key, "dies", SHORT)
            .await
            .expect("acquire")
            .expect("a free key is granted");
        assert!(
            store
                .renew(&grant_of(&held), SHORT, &state)
                .await
                .expect("renew")
        );
        let renewed = store.lease(&key).await.expect("lease").expect("row");
        assert_eq!(renewed.state, state, "{key}: renew saves the state");
        assert!(
            renewed.lease_until >= held.lease_until,
            "{key}: renew extends"
        );
        assert_eq!(renewed.epoch, held.epoch, "{key}: renew keeps the epoch");

        let next = take_after_expiry(&store, &key, "next", LONG, renewed.lease_until).await;
        assert_eq!(
            next.state, state,
            "{key}: the next owner reads the saved state"
        );
        assert_eq!(next.epoch, held.epoch + 1);
    }
    clean_up(&store).await;
}

/// The final state given to release is what the next owner gets.
pub async fn state_saved_at_release_reaches_the_next_owner(open: impl OpenStore) {
    let store = fresh(&open, "release_state").await;
    for (key, during, last) in [
        (LeaseKey::Shard(9), session("s9", 10), session("s9", 25)),
        (bots(2), checkpoint(100, 1), checkpoint(180, 9)),
    ] {
        let held = store
            .acquire(&key, "leaving", LONG)
            .await
            .expect("acquire")
            .expect("a free key is granted");
        let grant = grant_of(&held);
        assert!(store.renew(&grant, LONG, &during).await.expect("renew"));
        assert!(store.release(&grant, &last).await.expect("release"));
        let next = store
            .acquire(&key, "joining", LONG)
            .await
            .expect("acquire")
            .expect("a released key is granted at once");
        assert_eq!(
            next.state, last,
            "{key}: the next owner reads the final state"
        );
        assert_eq!(next.epoch, held.epoch + 1);
    }
    clean_up(&store).await;
}

/// `leases` lists every row in key order (shards by number, then partitions), and
/// `lease` of a key never acquired is `None`.
pub async fn leases_are_listed_in_key_order(open: impl OpenStore) {
    let store = fresh(&open, "listing").await;
    let alpha = LeaseKey::Partition {
        group: "alpha".into(),
        partition: 3,
    };
    for key in [
        LeaseKey::Shard(10),
        bots(1),
        LeaseKey::Shard(2),
        alpha.clone(),
    ] {
        let lease = store.acquire(&key, "n", LONG).await.expect("acquire");
        assert!(lease.is_some(), "{key} was free");
    }
    let keys: Vec<LeaseKey> = store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|lease| lease.key)
        .collect();
    assert_eq!(
        keys,
        [LeaseKey::Shard(2), LeaseKey::Shard(10), alpha, bots(1)]
    );
    assert_eq!(store.lease(&LeaseKey::Shard(3)).await.expect("lease"), None);
    clean_up(&store).await;
}
