//! `schema.cql`, split into statements and applied one by one (`shardmesh store init`).

use std::time::Duration;

use scylla::client::session::Session;

use super::errors::execution_error;
use crate::{Error, ErrorKind, ScyllaConfig};

/// The text of `schema.cql` at the repository root, built into the binary so `init`
/// applies exactly the schema this build prepares its statements against.
pub(crate) const SCHEMA_CQL: &str = include_str!("../../../../schema.cql");

/// How `schema.cql` names its keyspace; `init` puts the configured one in its place.
const CREATE_KEYSPACE: &str = "CREATE KEYSPACE IF NOT EXISTS shardmesh";
const USE_KEYSPACE: &str = "USE shardmesh";

/// The statements of `schema.cql` in order: `--` comments removed, split at `;`, trimmed.
///
/// Comments in the schema are whole lines and no string literal holds a `;`, which a unit
/// test checks, so a plain split is exact.
pub(crate) fn schema_statements() -> Vec<String> {
    let without_comments: String = SCHEMA_CQL
        .lines()
        .map(|line| line.find("--").map_or(line, |start| &line[..start]))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|statement| statement.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|statement| !statement.is_empty())
        .collect()
}

/// A statement of the schema as applied to `keyspace`.
enum Step {
    /// Switch the session to the keyspace (`USE` in the file).
    UseKeyspace,
    /// Run this CQL.
    Run(String),
}

fn steps(keyspace: &str) -> Vec<Step> {
    schema_statements()
        .into_iter()
        .map(|statement| {
            if statement == USE_KEYSPACE {
                Step::UseKeyspace
            } else if let Some(rest) = statement.strip_prefix(CREATE_KEYSPACE) {
                Step::Run(format!("CREATE KEYSPACE IF NOT EXISTS {keyspace}{rest}"))
            } else {
                Step::Run(statement)
            }
        })
        .collect()
}

/// Refuses a keyspace name that would need quoting: `init` splices it into CQL.
pub(super) fn check_keyspace(keyspace: &str) -> Result<(), Error> {
    if keyspace.is_empty()
        || !keyspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::new(
            ErrorKind::Unreachable,
            format!("store.scylla.keyspace {keyspace:?} is not a plain CQL identifier"),
        ));
    }
    Ok(())
}

/// Applies `schema.cql` to the cluster `config` names, in `config.keyspace`.
pub(super) async fn apply(session: &Session, config: &ScyllaConfig) -> Result<(), Error> {
    let keyspace = &config.keyspace;
    check_keyspace(keyspace)?;
    let timeout = Duration::from_millis(config.request_timeout_ms);
    for step in steps(keyspace) {
        match step {
            Step::UseKeyspace => session
                .use_keyspace(keyspace, false)
                .await
                .map_err(|error| {
                    Error::new(
                        ErrorKind::Backend,
                        format!("scylla init: use keyspace {keyspace}: {error}"),
                    )
                    .with_source(error)
                })?,
            Step::Run(cql) => {
                let mut statement = scylla::statement::Statement::new(cql.as_str());
                // DDL waits for schema agreement inside the driver; allow it more than a
                // data request.
                statement.set_request_timeout(Some(timeout.saturating_mul(6)));
                session
                    .query_unpaged(statement, ())
                    .await
                    .map_err(|error| {
                        let head: String = cql.chars().take(60).collect();
                        execution_error(&format!("init ({head}...)"), error)
                    })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_splits_into_its_statements() {
        let statements = schema_statements();
        assert!(
            statements[0].starts_with(CREATE_KEYSPACE),
            "{}",
            statements[0]
        );
        assert_eq!(statements[1], USE_KEYSPACE);
        let tables = statements
            .iter()
            .filter(|s| s.starts_with("CREATE TABLE IF NOT EXISTS "))
            .count();
        assert_eq!(tables, 8);
        assert!(statements.iter().all(|s| !s.contains("--")));
        for statement in &statements {
            assert!(
                statement.starts_with("CREATE ") || statement.starts_with("USE "),
                "{statement}"
            );
            assert!(statement.contains("IF NOT EXISTS") || statement == USE_KEYSPACE);
        }
    }

    #[test]
    fn comments_are_whole_lines_and_literals_hold_no_separator() {
        for line in SCHEMA_CQL.lines() {
            if let Some(start) = line.find("--") {
                assert!(line[..start].trim().is_empty(), "trailing comment: {line}");
            }
        }
        for statement in schema_statements() {
            let pieces: Vec<&str> = statement.split('\'').collect();
            assert!(pieces.len() % 2 == 1, "unbalanced quotes: {statement}");
            for literal in pieces.iter().skip(1).step_by(2) {
                assert!(!literal.contains(';'), "{statement}");
            }
        }
    }

    #[test]
    fn init_uses_the_configured_keyspace() {
        let steps = steps("mesh_prod");
        let Step::Run(create) = &steps[0] else {
            panic!("the schema starts with CREATE KEYSPACE");
        };
        assert!(create.starts_with("CREATE KEYSPACE IF NOT EXISTS mesh_prod WITH"));
        assert!(matches!(steps[1], Step::UseKeyspace));
        for step in &steps[2..] {
            let Step::Run(cql) = step else {
                panic!("one USE only");
            };
            assert!(!cql.contains("shardmesh"), "{cql}");
        }
    }
}
