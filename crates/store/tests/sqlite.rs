//! `SqliteStore`: the conformance suite, several OS processes sharing one file, and
//! damaged or unopenable files.

mod conformance;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shardmesh_store::{
    Checkpoint, DedupMark, ErrorKind, LeaseKey, LeaseState, SqliteConfig, SqliteStore, Store,
};

fn config(path: &Path) -> SqliteConfig {
    SqliteConfig {
        path: path.to_owned(),
        ..SqliteConfig::default()
    }
}

// Every check gets its own file; checks that open several handles or two clusters share it.
conformance::conformance_suite!({
    let dir = tempfile::tempdir().expect("temp dir");
    move |cluster: String| {
        let config = config(&dir.path().join("store.sqlite"));
        async move {
            SqliteStore::open(&config, &cluster)
                .await
                .expect("open sqlite store")
        }
    }
});

/// Set in child processes of [`three_processes_race_for_one_key`]: the store file.
const CHILD_FILE: &str = "SHARDMESH_TEST_RACE_FILE";
/// Set in child processes: the child's name, for owner ids.
const CHILD_NAME: &str = "SHARDMESH_TEST_RACE_NAME";
const RACERS_PER_PROCESS: usize = 8;
const ROUNDS_PER_RACER: usize = 25;

/// Three processes, eight acquirers each, on one file: one winner of a fresh key among
/// all 24, and across many acquire-release rounds every epoch has exactly one winner.
#[test]
fn three_processes_race_for_one_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("race.sqlite");
    let exe = std::env::current_exe().expect("test binary path");
    let (lines, received) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    for index in 0..3 {
        let mut child = Command::new(&exe)
            .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_FILE, &path)
            .env(CHILD_NAME, format!("p{index}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child process");
        let stdout = child.stdout.take().expect("child stdout");
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test race_child ... " on the same line first.
                if let Some(start) = line.find("RACE ") {
                    let _ = lines.send((index, line[start + 5..].to_owned()));
                }
            }
        });
        children.push(child);
    }
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(120);
    let next_line = || {
        let left = deadline.saturating_duration_since(Instant::now());
        received
            .recv_timeout(left)
            .expect("child output before the deadline")
    };

    // Start line: every child has opened the store before any of them races.
    let mut ready = 0;
    while ready < 3 {
        let (_, line) = next_line();
        assert_eq!(line, "ready", "unexpected child output before the start");
        ready += 1;
    }
    for child in &mut children {
        let mut stdin = child.stdin.take().expect("child stdin");
        stdin.write_all(b"go\n").expect("start child");
    }

    let (mut first_winners, mut epochs, mut done) = (Vec::new(), Vec::new(), 0);
    let mut wins_by_process = [0_u32; 3];
    while done < 3 {
        let (index, line) = next_line();
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["first", owner, epoch] => {
                first_winners.push(((*owner).to_owned(), epoch.parse::<u64>().unwrap()));
            }
            ["won", epoch, _owner] => {
                epochs.push(epoch.parse::<u64>().unwrap());
                wins_by_process[index] += 1;
            }
            ["done"] => done += 1,
            _ => panic!("child {index} printed {line:?}"),
        }
    }
    for mut child in children {
        let status = child.wait().expect("child exit");
        assert!(status.success(), "a child failed: {status}");
    }

    assert_eq!(
        first_winners.len(),
        1,
        "winners of a fresh key: {first_winners:?}"
    );
    assert_eq!(first_winners[0].1, 1);
    epochs.sort_unstable();
    let expected: Vec<u64> = (1..=u64::try_from(epochs.len()).unwrap()).collect();
    assert_eq!(epochs, expected, "every epoch won exactly once");
    assert!(epochs.len() >= 3, "only {} rounds were won", epochs.len());
    eprintln!(
        "{} epochs won across 3 processes ({wins_by_process:?} per process), one winner each",
        epochs.len()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let last = runtime.block_on(async {
        let store = SqliteStore::open(&config(&path), "race").await.unwrap();
        store.lease(&LeaseKey::Shard(1)).await.unwrap().unwrap()
    });
    assert_eq!(last.epoch, *epochs.last().unwrap());
    assert_eq!(last.owner, None, "every winner released");
}

/// The child side of [`three_processes_race_for_one_key`]; does nothing in a normal run.
#[test]
fn race_child() {
    let (Some(path), Some(name)) = (std::env::var_os(CHILD_FILE), std::env::var_os(CHILD_NAME))
    else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime
        .block_on(SqliteStore::open(&config(Path::new(&path)), "race"))
        .expect("child opens the store");
    println!("RACE ready");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("start line");

    runtime.block_on(async {
        let store = std::sync::Arc::new(store);
        let mut racers = tokio::task::JoinSet::new();
        for racer in 0..RACERS_PER_PROCESS {
            let (store, owner) = (store.clone(), format!("{name}-{racer}"));
            racers.spawn(async move {
                let fresh = LeaseKey::Shard(0);
                if let Some(lease) = store
                    .acquire(&fresh, &owner, Duration::from_secs(60))
                    .await
                    .unwrap()
                {
                    println!("RACE first {owner} {}", lease.epoch);
                }
                let key = LeaseKey::Shard(1);
                for _ in 0..ROUNDS_PER_RACER {
                    let Some(lease) = store
                        .acquire(&key, &owner, Duration::from_secs(60))
                        .await
                        .unwrap()
                    else {
                        continue;
                    };
                    let grant = conformance::grant_of(&lease);
                    // Holding the lease means nobody else can fence us out until release.
                    assert!(
                        store
                            .renew(&grant, Duration::from_secs(60), &LeaseState::Empty)
                            .await
                            .unwrap()
                    );
                    println!("RACE won {} {owner}", lease.epoch);
                    assert!(store.release(&grant, &LeaseState::Empty).await.unwrap());
                }
            });
        }
        racers.join_all().await;
    });
    println!("RACE done");
}

fn open_error(path: &Path) -> shardmesh_store::Error {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(SqliteStore::open(&config(path), "c"))
        .expect_err("opening must fail")
}

/// Asserts the error is one line naming the file.
fn assert_one_line_naming(error: &shardmesh_store::Error, path: &Path) -> String {
    let message = error.to_string();
    // Shown with --nocapture, to read what an operator would see.
    eprintln!("{message}");
    assert!(!message.contains('\n'), "{message:?}");
    assert!(message.contains(&path.display().to_string()), "{message:?}");
    message
}

#[test]
fn random_bytes_are_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.sqlite");
    let noise: Vec<u8> = (0..8_192_u32)
        .map(|n| n.wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect();
    std::fs::write(&path, noise).unwrap();
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    assert_one_line_naming(&error, &path);
}

#[test]
fn damaged_pages_are_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.sqlite");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&config(&path), "c").await.unwrap();
        store
            .acquire(&LeaseKey::Shard(1), "n", Duration::from_secs(60))
            .await
            .unwrap();
    });
    // The last connection closed, so everything is checkpointed into the main file.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8_192, "expected several pages");
    for byte in &mut bytes[4_096 + 16..] {
        *byte = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    assert_one_line_naming(&error, &path);
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photos.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    drop(conn);
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    let message = assert_one_line_naming(&error, &path);
    assert!(
        message.contains("not a shardmesh store") && message.contains("photos"),
        "{message}"
    );
    // Nothing was added to the other program's file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .unwrap();
    assert_eq!(tables, 1);
}

/// Makes a valid store, then lets `tamper` edit it with plain SQL.
fn tampered_store(dir: &Path, tamper: &str) -> PathBuf {
    let path = dir.join("tampered.sqlite");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(SqliteStore::open(&config(&path), "c"))
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(tamper)
        .unwrap();
    path
}

#[test]
fn incompatible_columns_are_a_schema_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = tampered_store(
        dir.path(),
        "DROP TABLE leases; CREATE TABLE leases (cluster TEXT, key TEXT, holder TEXT)",
    );
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::SchemaMismatch, "{error}");
    let message = assert_one_line_naming(&error, &path);
    assert!(
        message.contains("leases") && message.contains("epoch"),
        "{message}"
    );
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = tampered_store(dir.path(), "PRAGMA user_version = 99");
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::SchemaMismatch, "{error}");
    let message = assert_one_line_naming(&error, &path);
    assert!(message.contains("99"), "{message}");
}

#[test]
fn a_missing_directory_is_unreachable_with_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("store.sqlite");
    let error = open_error(&path);
    assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");
    let message = assert_one_line_naming(&error, &path);
    assert!(message.contains("no such file or directory"), "{message}");
}

#[test]
fn a_directory_in_place_of_the_file_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let error = open_error(dir.path());
    assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");
    let message = assert_one_line_naming(&error, dir.path());
    assert!(message.contains("is a directory"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_opening_a_new_file_together_agree_on_one_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("new.sqlite"));
    let mut opens = tokio::task::JoinSet::new();
    for n in 0..8 {
        let config = config.clone();
        opens.spawn(async move { SqliteStore::open(&config, &format!("c{n}")).await });
    }
    for opened in opens.join_all().await {
        let store = opened.expect("every concurrent open succeeds");
        assert!(
            store
                .acquire(&LeaseKey::Shard(0), "n", Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn rows_survive_reopening_and_read_plainly_with_sql() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("plain.sqlite"));
    let key = LeaseKey::Partition {
        group: "bots".into(),
        partition: 2,
    };
    let state = LeaseState::Partition(Checkpoint {
        offset: Some(41),
        marks: [(
            3,
            DedupMark {
                epoch: 2,
                session: "abc".into(),
                seq: 9,
            },
        )]
        .into(),
    });
    {
        let store = SqliteStore::open(&config, "prod").await.unwrap();
        let lease = store
            .acquire(&key, "n1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .renew(
                    &conformance::grant_of(&lease),
                    Duration::from_secs(60),
                    &state
                )
                .await
                .unwrap()
        );
    }
    let store = SqliteStore::open(&config, "prod").await.unwrap();
    assert_eq!(store.lease(&key).await.unwrap().unwrap().state, state);

    let conn = rusqlite::Connection::open(&config.path).unwrap();
    let row: (String, String, i64, i64, String) = conn
        .query_row(
            "SELECT key, owner, epoch, stream_offset, marks FROM leases WHERE cluster = 'prod'",
            [],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "partition/bots/2".into(),
            "n1".into(),
            1,
            41,
            r#"{"3":{"epoch":2,"session":"abc","seq":9}}"#.into()
        )
    );
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("locked.sqlite"),
        busy_timeout_ms: 50,
    };
    let store = SqliteStore::open(&config, "c").await.unwrap();
    // Another process holding the write lock, as `sqlite3` in a `BEGIN IMMEDIATE` would.
    let other = rusqlite::Connection::open(&config.path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let error = store
        .acquire(&LeaseKey::Shard(0), "n", Duration::from_secs(60))
        .await
        .expect_err("the file is locked");
    assert_eq!(error.kind(), ErrorKind::Backend, "{error}");
    assert!(error.is_retryable());
    let message = assert_one_line_naming(&error, &config.path);
    assert!(
        message.contains("acquire shard/0") && message.contains("busy timeout"),
        "{message}"
    );

    other.execute_batch("COMMIT").unwrap();
    let lease = store
        .acquire(&LeaseKey::Shard(0), "n", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(lease.is_some(), "the retry succeeds once the lock is gone");
}
