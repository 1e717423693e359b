//! The lease keeper against a real SQLite store: acquisition, hand-over with state,
//! crash take-over, and self-fencing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_mesh::{LeaseConfig, LeaseGuard, LeaseHolder, LeaseKeeper};
use shardmesh_store::{LeaseKey, LeaseState, ShardSession, SqliteConfig, SqliteStore, Store};
use tokio::time::Instant;

/// A role that records what the keeper asked of it, and saves a session per key.
#[derive(Default)]
struct Recorder {
    // A std Mutex: never held across an await.
    inner: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    started: Vec<(LeaseKey, u64, LeaseState)>,
    handed_over: Vec<LeaseKey>,
    lost: Vec<LeaseKey>,
    seq: HashMap<LeaseKey, u64>,
    guards: Vec<LeaseGuard>,
    /// How often the keeper asked for the state to save.
    state_reads: usize,
}

impl Recorder {
    fn set_seq(&self, key: &LeaseKey, seq: u64) {
        self.inner.lock().unwrap().seq.insert(key.clone(), seq);
    }

    fn session(&self, key: &LeaseKey) -> LeaseState {
        let seq = self
            .inner
            .lock()
            .unwrap()
            .seq
            .get(key)
            .copied()
            .unwrap_or(0);
        LeaseState::Shard(ShardSession {
            session_id: format!("session-of-{key}"),
            seq,
            resume_url: "ws://127.0.0.1:1".into(),
        })
    }
}

impl LeaseHolder for Recorder {
    async fn start(&self, guard: LeaseGuard) {
        let lease = guard.lease().clone();
        let mut inner = self.inner.lock().unwrap();
        inner.started.push((lease.key, lease.epoch, lease.state));
        inner.guards.push(guard);
    }

    fn state(&self, key: &LeaseKey) -> LeaseState {
        self.inner.lock().unwrap().state_reads += 1;
        self.session(key)
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        self.inner.lock().unwrap().handed_over.push(key.clone());
        self.session(key)
    }

    async fn lost(&self, key: &LeaseKey) {
        self.inner.lock().unwrap().lost.push(key.clone());
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("store.sqlite"),
        ..SqliteConfig::default()
    };
    let cluster = format!("keeper-{}", std::process::id());
    let store = Arc::new(SqliteStore::open(&config, &cluster).await.unwrap());
    Fixture { _dir: dir, store }
}

fn shards(ids: &[u32]) -> BTreeSet<LeaseKey> {
    ids.iter().map(|id| LeaseKey::Shard(*id)).collect()
}

fn fast_leases() -> LeaseConfig {
    LeaseConfig {
        duration_ms: 600,
        renew_interval_ms: 200,
        fence_margin_ms: 100,
    }
}

#[tokio::test]
async fn a_key_targeted_at_two_nodes_is_held_by_one() {
    let fixture = fixture().await;
    let (role_a, role_b) = (Recorder::default(), Recorder::default());
    let mut a = LeaseKeeper::new(fixture.store.clone(), "a", LeaseConfig::default());
    let mut b = LeaseKeeper::new(fixture.store.clone(), "b", LeaseConfig::default());
    let report_a = a.step(&shards(&[0, 1, 2]), &role_a).await;
    let report_b = b.step(&shards(&[2, 3]), &role_b).await;
    assert_eq!(report_a.acquired.len(), 3);
    assert_eq!(report_b.acquired, [LeaseKey::Shard(3)]);
    assert!(report_a.errors.is_empty() && report_b.errors.is_empty());
    let held_by_b: Vec<_> = b.held().cloned().collect();
    assert_eq!(held_by_b, [LeaseKey::Shard(3)]);
}

#[tokio::test]
async fn a_hand_over_passes_the_final_state_to_the_next_owner() {
    let fixture = fixture().await;
    let (role_a, role_b) = (Recorder::default(), Recorder::default());
    let mut a = LeaseKeeper::new(fixture.store.clone(), "a", LeaseConfig::default());
    let mut b = LeaseKeeper::new(fixture.store.clone(), "b", LeaseConfig::default());
    let key = LeaseKey::Shard(7);
    a.step(&shards(&[7]), &role_a).await;
    role_a.set_seq(&key, 41);
    a.step(&shards(&[7]), &role_a).await;
    role_a.set_seq(&key, 42);

    let report = a.step(&shards(&[]), &role_a).await;
    assert_eq!(report.handed_over, [LeaseKey::Shard(7)]);
    assert_eq!(a.held().count(), 0);
    let mut guard = role_a.inner.lock().unwrap().guards.pop().unwrap();
    assert!(
        !guard.is_valid(),
        "the old holder's guard must end with the hand-over"
    );
    guard.lapsed().await;

    let report = b.step(&shards(&[7]), &role_b).await;
    assert_eq!(report.acquired, [LeaseKey::Shard(7)]);
    let (_, epoch, state) = role_b.inner.lock().unwrap().started[0].clone();
    let first_epoch = role_a.inner.lock().unwrap().started[0].1;
    assert_eq!(epoch, first_epoch + 1);
    assert_eq!(state, role_a.session(&key));
    assert!(matches!(
        state,
        LeaseState::Shard(ShardSession { seq: 42, .. })
    ));
}

#[tokio::test]
async fn a_crashed_owner_is_taken_over_from_its_last_renewal() {
    let fixture = fixture().await;
    let (role_a, role_b) = (Recorder::default(), Recorder::default());
    let mut a = LeaseKeeper::new(fixture.store.clone(), "a", fast_leases());
    let mut b = LeaseKeeper::new(fixture.store.clone(), "b", fast_leases());
    let key = LeaseKey::Shard(1);
    a.step(&shards(&[1]), &role_a).await;
    role_a.set_seq(&key, 17);
    a.step(&shards(&[1]), &role_a).await; // renews, saving seq 17
    role_a.set_seq(&key, 99); // never saved: a crashes now
    drop(a);

    let deadline = Instant::now() + Duration::from_secs(5);
    while b.held().count() == 0 {
        assert!(Instant::now() < deadline, "b never took the lease over");
        b.step(&shards(&[1]), &role_b).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, state) = role_b.inner.lock().unwrap().started[0].clone();
    assert!(
        matches!(state, LeaseState::Shard(ShardSession { seq: 17, .. })),
        "{state:?}"
    );
}

#[tokio::test]
async fn an_owner_that_stops_renewing_fences_itself_before_anyone_can_acquire() {
    let fixture = fixture().await;
    let (role_a, role_b) = (Recorder::default(), Recorder::default());
    let config = fast_leases();
    let mut a = LeaseKeeper::new(fixture.store.clone(), "a", config.clone());
    let acquired_at = Instant::now();
    a.step(&shards(&[3]), &role_a).await;
    let mut guard = role_a.inner.lock().unwrap().guards.pop().unwrap();
    guard.lapsed().await;
    let fenced_at = Instant::now();
    assert!(
        fenced_at - acquired_at < config.duration(),
        "fenced only after the lease expired"
    );

    // The store still holds the lease for a's remaining margin: b cannot have it yet.
    let mut b = LeaseKeeper::new(fixture.store.clone(), "b", config.clone());
    let early = b.step(&shards(&[3]), &role_b).await;
    if Instant::now() < acquired_at + config.duration() {
        assert!(
            early.acquired.is_empty(),
            "b acquired before a's lease expired"
        );
    }
    // a's next step notices its own fence and reports the lease lost.
    let report = a.step(&shards(&[3]), &role_a).await;
    assert_eq!(report.lost, [LeaseKey::Shard(3)]);
    assert_eq!(role_a.inner.lock().unwrap().lost, [LeaseKey::Shard(3)]);
}

#[tokio::test]
async fn a_renewal_refused_after_a_take_over_reports_the_lease_lost() {
    let fixture = fixture().await;
    let (role_a, role_b) = (Recorder::default(), Recorder::default());
    let config = fast_leases();
    let mut a = LeaseKeeper::new(fixture.store.clone(), "a", config.clone());
    a.step(&shards(&[5]), &role_a).await;
    // b takes the expired lease directly in the store while a is stalled.
    let deadline = Instant::now() + Duration::from_secs(5);
    let taken = loop {
        if let Some(lease) = fixture
            .store
            .acquire(&LeaseKey::Shard(5), "b", config.duration())
            .await
            .unwrap()
        {
            break lease;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let report = a.step(&shards(&[5]), &role_a).await;
    assert_eq!(report.lost, [LeaseKey::Shard(5)]);
    let row = fixture
        .store
        .lease(&LeaseKey::Shard(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.owner.as_deref(), Some("b"));
    assert_eq!(row.epoch, taken.epoch);
    drop(role_b);
}

/// A holder that saves its state itself between renewals (a consumer's checkpoint)
/// does so under `hold_renewals`: a renewal started meanwhile reads the state only once
/// that write is done, so it cannot save an older state over a newer one.
#[tokio::test]
async fn a_renewal_waits_while_the_holder_saves_its_own_state() {
    let fixture = fixture().await;
    let role = Arc::new(Recorder::default());
    let key = LeaseKey::Shard(4);
    let mut keeper = LeaseKeeper::new(fixture.store.clone(), "a", LeaseConfig::default());
    keeper.step(&shards(&[4]), role.as_ref()).await;
    let guard = role.inner.lock().unwrap().guards.pop().unwrap();
    role.set_seq(&key, 5);

    let held = guard.hold_renewals().await;
    let reads_before = role.inner.lock().unwrap().state_reads;
    let renewing = tokio::spawn({
        let role = Arc::clone(&role);
        async move { keeper.step(&shards(&[4]), role.as_ref()).await }
    });
    // For as long as the holder holds renewals, the renewal does not read the state.
    let watched_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < watched_until {
        assert_eq!(
            role.inner.lock().unwrap().state_reads,
            reads_before,
            "a renewal read the state while the holder was saving its own"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The holder's own write of a newer state, as a consumer checkpoint makes it.
    role.set_seq(&key, 7);
    let grant = shardmesh_store::LeaseGrant {
        key: key.clone(),
        owner: "a".into(),
        epoch: guard.epoch(),
    };
    let own = fixture
        .store
        .renew(&grant, Duration::from_secs(10), &role.session(&key))
        .await
        .unwrap();
    assert!(own);
    drop(held);

    let report = renewing.await.unwrap();
    assert!(
        report.errors.is_empty() && report.lost.is_empty(),
        "{report:?}"
    );
    assert_eq!(role.inner.lock().unwrap().state_reads, reads_before + 1);
    let row = fixture.store.lease(&key).await.unwrap().unwrap();
    assert_eq!(
        row.state,
        role.session(&key),
        "the renewal saved an older state"
    );
}
