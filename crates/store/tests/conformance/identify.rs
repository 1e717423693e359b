//! IDENTIFY checks: pacing per bucket across handles, and the daily budget.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardmesh_store::{IDENTIFY_INTERVAL, IdentifyBudget, IdentifyGrant, Store};
use tokio::task::JoinSet;

use super::{OpenStore, clean_up, fresh, now_ms, unique_cluster};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Eight requesters on four handles, each retrying on `RetryAfter`, until three grants
/// are made: consecutive grants are at least [`IDENTIFY_INTERVAL`] apart.
pub async fn identify_grants_in_one_bucket_are_five_seconds_apart_under_contention(
    open: impl OpenStore,
) {
    const GRANTS: usize = 3;
    let cluster = unique_cluster("pacing");
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(Arc::new(open.open(cluster.clone()).await));
    }
    // Each grant as (sent, answered): the store decided somewhere in between.
    let grants: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let mut requesters = JoinSet::new();
    for requester in 0..8 {
        let store = Arc::clone(&handles[requester % handles.len()]);
        let grants = Arc::clone(&grants);
        requesters.spawn(async move {
            while grants.lock().unwrap().len() < GRANTS {
                let sent = Instant::now();
                match store.grant_identify(3).await.expect("grant_identify") {
                    IdentifyGrant::Granted => grants.lock().unwrap().push((sent, Instant::now())),
                    IdentifyGrant::RetryAfter(wait) => {
                        assert!(
                            !wait.is_zero() && wait <= IDENTIFY_INTERVAL,
                            "retry after {wait:?}"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    refused @ IdentifyGrant::BudgetExhausted { .. } => {
                        panic!("no budget is recorded, yet {refused:?}")
                    }
                }
            }
        });
    }
    requesters.join_all().await;
    let mut grants = grants.lock().unwrap().clone();
    grants.sort();
    assert!(grants.len() >= GRANTS);
    for pair in grants.windows(2) {
        let ((earlier_sent, _), (_, later_answered)) = (pair[0], pair[1]);
        // The store stamped each grant between its request being sent and answered, so
        // two stamps 5 s apart imply at least 5 s from the earlier send to the later
        // answer. This bound needs no allowance for clock slop.
        let apart = later_answered - earlier_sent;
        assert!(
            apart >= IDENTIFY_INTERVAL,
            "two grants in one bucket within {apart:?}"
        );
    }
    clean_up(handles[0].as_ref()).await;
}

/// A grant in one bucket does not delay another bucket; a second request in the same
/// bucket is told how long to wait.
pub async fn identify_buckets_do_not_block_each_other(open: impl OpenStore) {
    let store = Arc::new(fresh(&open, "buckets").await);
    let mut requests = JoinSet::new();
    for bucket in 0..8 {
        let store = Arc::clone(&store);
        requests.spawn(async move { (bucket, store.grant_identify(bucket).await) });
    }
    for (bucket, answer) in requests.join_all().await {
        assert_eq!(
            answer.expect("grant_identify"),
            IdentifyGrant::Granted,
            "bucket {bucket}"
        );
    }
    match store.grant_identify(5).await.expect("grant_identify") {
        IdentifyGrant::RetryAfter(wait) => {
            assert!(!wait.is_zero() && wait <= IDENTIFY_INTERVAL, "{wait:?}");
        }
        other => panic!("a bucket used just now answered {other:?}"),
    }
    clean_up(store.as_ref()).await;
}

/// Each grant spends one unit; with none left the answer is `BudgetExhausted` until the
/// recorded reset time.
pub async fn identify_is_refused_when_the_budget_is_spent(open: impl OpenStore) {
    let store = fresh(&open, "budget").await;
    let resets_at = now_ms() + Duration::from_secs(3_600);
    let budget = IdentifyBudget {
        remaining: 2,
        total: 1_000,
        resets_at,
    };
    store.set_identify_budget(budget).await.expect("set budget");
    assert_eq!(store.identify_budget().await.expect("budget"), Some(budget));
    for bucket in [0, 1] {
        let answer = store.grant_identify(bucket).await.expect("grant_identify");
        assert_eq!(answer, IdentifyGrant::Granted, "bucket {bucket}");
    }
    for bucket in [2, 3] {
        let answer = store.grant_identify(bucket).await.expect("grant_identify");
        assert_eq!(
            answer,
            IdentifyGrant::BudgetExhausted { until: resets_at },
            "bucket {bucket}"
        );
    }
    let spent = IdentifyBudget {
        remaining: 0,
        ..budget
    };
    assert_eq!(store.identify_budget().await.expect("budget"), Some(spent));
    clean_up(&store).await;
}

/// Once the reset time has passed, the budget is full again (less the grant that
/// noticed) and the next reset is a day later.
pub async fn identify_budget_refills_at_its_reset_time(open: impl OpenStore) {
    let store = fresh(&open, "refill").await;
    let resets_at = now_ms() - Duration::from_secs(1);
    let budget = IdentifyBudget {
        remaining: 0,
        total: 5,
        resets_at,
    };
    store.set_identify_budget(budget).await.expect("set budget");
    let answer = store.grant_identify(0).await.expect("grant_identify");
    assert_eq!(answer, IdentifyGrant::Granted);
    let refilled = IdentifyBudget {
        remaining: 4,
        total: 5,
        resets_at: resets_at + DAY,
    };
    assert_eq!(
        store.identify_budget().await.expect("budget"),
        Some(refilled)
    );
    clean_up(&store).await;
}

/// Before `GET /gateway/bot` recorded a budget, grants are paced but nothing is counted.
pub async fn identify_without_budget_is_paced_but_not_counted(open: impl OpenStore) {
    let store = fresh(&open, "no_budget").await;
    let answer = store.grant_identify(0).await.expect("grant_identify");
    assert_eq!(answer, IdentifyGrant::Granted);
    assert!(matches!(
        store.grant_identify(0).await.expect("grant_identify"),
        IdentifyGrant::RetryAfter(_)
    ));
    assert_eq!(store.identify_budget().await.expect("budget"), None);
    clean_up(&store).await;
}
