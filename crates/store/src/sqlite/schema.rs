//! Opening the SQLite file: the schema, WAL mode, and telling a damaged file or another
//! program's database apart from a shardmesh store before anything is written.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::convert::describe;
use crate::{Error, ErrorKind};

/// Raised whenever a table or column changes; a file with a higher one is refused.
pub(super) const SCHEMA_VERSION: i32 = 2;

/// `PRAGMA application_id` of a shardmesh store (ASCII `shms`), so another program's
/// SQLite file is recognised instead of having tables added to it.
const APPLICATION_ID: i32 = 0x7368_6d73;

/// Every table: its name, its DDL and the columns this build reads and writes.
///
/// Every row carries its cluster name so several clusters can share one file. Times are
/// Unix milliseconds (`*_ms`) so `sqlite3` shows plain numbers.
const TABLES: &[(&str, &str, &[&str])] = &[
    (
        "cluster_spec",
        "CREATE TABLE IF NOT EXISTS cluster_spec (
            cluster         TEXT    NOT NULL PRIMARY KEY,
            shard_count     INTEGER NOT NULL,
            partitions      INTEGER NOT NULL,
            max_concurrency INTEGER NOT NULL,
            agreed_at_ms    INTEGER NOT NULL
        )",
        &[
            "cluster",
            "shard_count",
            "partitions",
            "max_concurrency",
            "agreed_at_ms",
        ],
    ),
    (
        // Added in schema version 2; created in older files when they are opened.
        "cluster_identity",
        "CREATE TABLE IF NOT EXISTS cluster_identity (
            cluster       TEXT    NOT NULL PRIMARY KEY,
            id            TEXT    NOT NULL,
            created_at_ms INTEGER NOT NULL
        )",
        &["cluster", "id", "created_at_ms"],
    ),
    (
        // One row per lease key, never deleted (the epoch must never go back). Shard
        // state: session_id, seq, resume_url. Partition state: stream_offset and marks
        // (JSON: {"<shard>": {"epoch", "session", "seq"}}). `offset` is an SQL keyword,
        // hence `stream_offset`.
        "leases",
        "CREATE TABLE IF NOT EXISTS leases (
            cluster        TEXT    NOT NULL,
            key            TEXT    NOT NULL,
            owner          TEXT,
            epoch          INTEGER NOT NULL,
            lease_until_ms INTEGER NOT NULL,
            session_id     TEXT,
            seq            INTEGER,
            resume_url     TEXT,
            stream_offset  INTEGER,
            marks          TEXT,
            PRIMARY KEY (cluster, key)
        ) WITHOUT ROWID",
        &[
            "cluster",
            "key",
            "owner",
            "epoch",
            "lease_until_ms",
            "session_id",
            "seq",
            "resume_url",
            "stream_offset",
            "marks",
        ],
    ),
    (
        "identify_budget",
        "CREATE TABLE IF NOT EXISTS identify_budget (
            cluster      TEXT    NOT NULL PRIMARY KEY,
            remaining    INTEGER NOT NULL,
            total        INTEGER NOT NULL,
            resets_at_ms INTEGER NOT NULL
        )",
        &["cluster", "remaining", "total", "resets_at_ms"],
    ),
    (
        "identify_buckets",
        "CREATE TABLE IF NOT EXISTS identify_buckets (
            cluster          TEXT    NOT NULL,
            bucket           INTEGER NOT NULL,
            last_granted_ms  INTEGER NOT NULL,
            PRIMARY KEY (cluster, bucket)
        ) WITHOUT ROWID",
        &["cluster", "bucket", "last_granted_ms"],
    ),
    (
        // `group` is an SQL keyword, hence `consumer_group`.
        "nodes",
        "CREATE TABLE IF NOT EXISTS nodes (
            cluster        TEXT    NOT NULL,
            node           TEXT    NOT NULL,
            role           TEXT    NOT NULL,
            consumer_group TEXT,
            state          TEXT    NOT NULL,
            address        TEXT,
            started_at_ms  INTEGER NOT NULL,
            seen_at_ms     INTEGER NOT NULL,
            expires_at_ms  INTEGER NOT NULL,
            PRIMARY KEY (cluster, node)
        ) WITHOUT ROWID",
        &[
            "cluster",
            "node",
            "role",
            "consumer_group",
            "state",
            "address",
            "started_at_ms",
            "seen_at_ms",
            "expires_at_ms",
        ],
    ),
    (
        // Append-only; `id` breaks ties between actions logged in the same millisecond.
        "actions",
        "CREATE TABLE IF NOT EXISTS actions (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            cluster TEXT    NOT NULL,
            at_ms  INTEGER NOT NULL,
            actor  TEXT    NOT NULL,
            action TEXT    NOT NULL,
            args   TEXT    NOT NULL,
            result TEXT    NOT NULL
        )",
        &[
            "id", "cluster", "at_ms", "actor", "action", "args", "result",
        ],
    ),
];

/// The name of every table; each has a `cluster` column.
pub(super) fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(name, _, _)| *name)
}

/// Indexes; created with the tables.
const INDEXES: &[&str] =
    &["CREATE INDEX IF NOT EXISTS actions_by_time ON actions (cluster, at_ms, id)"];

/// Opens (creating if absent) the store file at `path`, ready for use.
///
/// # Errors
///
/// [`ErrorKind::Unreachable`] when the file cannot be opened (with the OS reason),
/// [`ErrorKind::Corrupt`] when it is damaged or another program's database,
/// [`ErrorKind::SchemaMismatch`] when its tables are not the ones this build needs.
pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    // SQLite says only "unable to open database file"; opening it ourselves first gives
    // the OS reason (missing directory, permission denied, is a directory).
    if let Err(error) = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        return Err(Error::new(
            ErrorKind::Unreachable,
            format!(
                "sqlite file {}: cannot open: {}",
                path.display(),
                lowercase(&error.to_string())
            ),
        ));
    }
    let sql = |op: &'static str| move |error: rusqlite::Error| describe(path, op, &error);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open"))?;
    conn.busy_timeout(busy_timeout).map_err(sql("open"))?;
    // Room for every statement the store prepares, so none is re-parsed per call.
    conn.set_prepared_statement_cache_capacity(32);

    let (application_id, version, tables) = inspect(&conn).map_err(|error| {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "sqlite file {} is not a sqlite database (damaged, encrypted or another \
                     kind of file)",
                    path.display()
                ),
            )
        } else {
            describe(path, "read header", &error)
        }
    })?;
    check_owner(path, application_id, &tables)?;
    check_version(path, version)?;

    // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY at
    // once, without calling the busy handler, when another process opens the file at the
    // same moment: retry for as long as the busy timeout allows.
    let deadline = std::time::Instant::now() + busy_timeout;
    let mode: String = loop {
        match conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
            Ok(mode) => break mode,
            Err(error)
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(sql("switch to wal mode")(error)),
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            ErrorKind::Unreachable,
            format!(
                "sqlite file {}: cannot use wal mode (journal_mode stays {mode})",
                path.display()
            ),
        ));
    }
    // WAL + NORMAL: a commit survives a process crash; only a power cut may lose the
    // last commits, and leases re-converge from expiry anyway.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("set synchronous"))?;

    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(sql("check integrity"))?;
    if check != "ok" {
        // quick_check answers on several lines ("*** in database main ***" first); an
        // error is one line.
        let findings: Vec<&str> = check
            .lines()
            .filter(|line| !line.starts_with("***"))
            .collect();
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "sqlite file {} is damaged: {}",
                path.display(),
                findings.join("; ")
            ),
        ));
    }

    if application_id != APPLICATION_ID || version < SCHEMA_VERSION {
        create(&conn, path)?;
    }
    check_columns(&conn, path)?;
    Ok(conn)
}

/// `application_id`, `user_version` and the table names of the file.
fn inspect(conn: &Connection) -> rusqlite::Result<(i32, i32, Vec<String>)> {
    let application_id = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    let version = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )?;
    let tables = stmt
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((application_id, version, tables))
}

/// Refuses a file that belongs to another program, rather than adding tables to it.
fn check_owner(path: &Path, application_id: i32, tables: &[String]) -> Result<(), Error> {
    if application_id == APPLICATION_ID {
        return Ok(());
    }
    if application_id != 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "sqlite file {} is not a shardmesh store: it belongs to another program \
                 (application_id {application_id:#x})",
                path.display()
            ),
        ));
    }
    let foreign: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|name| !TABLES.iter().any(|(ours, _, _)| ours == name))
        .collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "sqlite file {} is not a shardmesh store: it holds tables {}",
                path.display(),
                foreign.join(", ")
            ),
        ))
    }
}

fn check_version(path: &Path, version: i32) -> Result<(), Error> {
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::SchemaMismatch,
            format!(
                "sqlite file {} has schema version {version}, this build knows only \
                 {SCHEMA_VERSION} (written by a newer shardmesh?)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Creates the tables in one transaction, so processes opening a new file at the same
/// time see either nothing or the whole schema.
fn create(conn: &Connection, path: &Path) -> Result<(), Error> {
    let sql = |error: rusqlite::Error| describe(path, "create tables", &error);
    let tx =
        rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(sql)?;
    // Another process may have created (or upgraded) the schema while we waited for
    // the lock: check again under it.
    let (application_id, version, tables) = inspect(&tx).map_err(sql)?;
    check_owner(path, application_id, &tables)?;
    check_version(path, version)?;
    for (_, ddl, _) in TABLES {
        tx.execute_batch(ddl).map_err(sql)?;
    }
    for ddl in INDEXES {
        tx.execute_batch(ddl).map_err(sql)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sql)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// Refuses a file whose tables lack columns this build uses (an edited or foreign schema).
fn check_columns(conn: &Connection, path: &Path) -> Result<(), Error> {
    let sql = |error: rusqlite::Error| describe(path, "read schema", &error);
    for (table, _, columns) in TABLES {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(sql)?;
        let present = stmt
            .query_map([table], |row| row.get::<_, String>(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        if present.is_empty() {
            return Err(Error::new(
                ErrorKind::SchemaMismatch,
                format!("sqlite file {}: table {table} is missing", path.display()),
            ));
        }
        let missing: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|column| !present.iter().any(|name| name == column))
            .collect();
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::SchemaMismatch,
                format!(
                    "sqlite file {}: table {table} lacks column(s) {}",
                    path.display(),
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// OS messages start with a capital ("No such file or directory"); ours are lowercase.
fn lowercase(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_reasons_are_lowercased() {
        assert_eq!(
            lowercase("No such file or directory (os error 2)"),
            "no such file or directory (os error 2)"
        );
        assert_eq!(lowercase(""), "");
    }

    #[test]
    fn every_table_declares_the_columns_its_ddl_creates() {
        let conn = Connection::open_in_memory().unwrap();
        for (table, ddl, columns) in TABLES {
            conn.execute_batch(ddl).unwrap();
            let mut stmt = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap();
            let present: Vec<String> = stmt
                .query_map([table], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(&present, columns, "{table}");
        }
    }
}
