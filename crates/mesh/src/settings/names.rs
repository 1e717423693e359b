//! Names of settings: dotted keys, the environment variables that set them, and the
//! one meant when a name misses.
//!
//! Which variables are settings: every `SHARDMESH__…` (two underscores) is read as
//! one, so one that names no key is an unknown key. A `SHARDMESH_…` variable with one
//! underscore is not read; it is refused only when it spells a key with the wrong
//! separators (`SHARDMESH_CLUSTER_NAME`), since its writer meant a setting. Every other
//! `SHARDMESH_…` variable is left alone: the project's own tests and benchmarks use
//! that namespace (`SHARDMESH_TEST_AMQP_URL`, `SHARDMESH_SCYLLA_URI`, `SHARDMESH_BIN`,
//! `SHARDMESH_CONSUMER_BENCH_NODE`, …), and they reach nodes started from them.

use std::collections::BTreeSet;

use super::SettingsError;

/// Prefix of environment variables that override settings.
pub(super) const ENV_PREFIX: &str = "SHARDMESH";
/// Separates the prefix and the levels of a key in an environment variable name.
pub(super) const ENV_SEPARATOR: &str = "__";

/// `store.sqlite.path` -> `SHARDMESH__STORE__SQLITE__PATH`.
pub(super) fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR).to_uppercase()
    )
}

/// The key a variable sets, read as the config crate reads it (`SHARDMESH__` prefix,
/// `__` between levels, any case), or `None` for a variable it does not read.
pub(super) fn setting_key(variable: &str) -> Option<String> {
    let levels = variable
        .strip_prefix(ENV_PREFIX)?
        .strip_prefix(ENV_SEPARATOR)?;
    Some(levels.to_lowercase().replace(ENV_SEPARATOR, "."))
}

/// Refuses the first variable the config crate does not read that spells one of
/// `known` with the wrong separators or case (`SHARDMESH_CLUSTER_NAME`,
/// `SHARDMESH_CLUSTER__NAME`, `shardmesh__cluster__name`), naming the variable meant.
pub(super) fn refuse_misspelled_variables<'a>(
    variables: impl IntoIterator<Item = &'a str>,
    known: &BTreeSet<String>,
) -> Result<(), SettingsError> {
    for variable in variables {
        let Some(rest) = strip_prefix_ignoring_case(variable, ENV_PREFIX) else {
            continue;
        };
        if setting_key(variable).is_some() || !rest.starts_with('_') {
            continue;
        }
        let spelled = without_separators(rest);
        if let Some(meant) = known.iter().find(|key| without_separators(key) == spelled) {
            return Err(SettingsError {
                key: String::new(),
                origin: Some(format!("environment variable {variable}")),
                problem: format!(
                    "names no setting; did you mean {}? (two underscores after \
                     {ENV_PREFIX} and between the levels of the key)",
                    env_var_name(meant)
                ),
            });
        }
    }
    Ok(())
}

/// The key of `known` that `wanted` most likely misspells: the same words with other
/// separators, else the nearest within a few edits.
pub(super) fn closest_key<'k>(wanted: &str, known: &'k BTreeSet<String>) -> Option<&'k str> {
    let spelled = without_separators(wanted);
    if let Some(same_words) = known.iter().find(|key| without_separators(key) == spelled) {
        return Some(same_words);
    }
    let tolerance = (wanted.len() / 4).max(2);
    known
        .iter()
        .map(|key| (edit_distance(wanted, key), key))
        .filter(|(distance, _)| *distance <= tolerance)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key.as_str())
}

fn strip_prefix_ignoring_case<'v>(variable: &'v str, prefix: &str) -> Option<&'v str> {
    let head = variable.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &variable[prefix.len()..])
}

/// A name's words, lower case, one `_` between them: `cluster.name`, `CLUSTER__NAME`
/// and `_cluster_name` all read `cluster_name`.
fn without_separators(name: &str) -> String {
    name.to_lowercase()
        .split(['_', '.'])
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use crate::MeshSettings;

    use super::*;

    fn load_with(variable: &str) -> Result<MeshSettings, SettingsError> {
        MeshSettings::load_from(None, [(variable.to_owned(), "prod".to_owned())])
    }

    #[test]
    fn a_variable_that_misses_a_setting_is_refused_naming_the_one_meant_and_others_are_not() {
        for (variable, refused) in [
            (
                "SHARDMESH_CLUSTER_NAME",
                "environment variable SHARDMESH_CLUSTER_NAME: names no setting; did you \
                 mean SHARDMESH__CLUSTER__NAME? (two underscores after SHARDMESH and between \
                 the levels of the key)",
            ),
            (
                "SHARDMESH_STORE__SQLITE_PATH",
                "environment variable SHARDMESH_STORE__SQLITE_PATH: names no setting; did \
                 you mean SHARDMESH__STORE__SQLITE__PATH? (two underscores after SHARDMESH \
                 and between the levels of the key)",
            ),
            (
                "SHARDMESH__CLUSTR__NAME",
                "clustr.name (from environment variable SHARDMESH__CLUSTR__NAME): unknown \
                 key; did you mean SHARDMESH__CLUSTER__NAME?",
            ),
            (
                "SHARDMESH__CLUSTER_NAME",
                "cluster_name (from environment variable SHARDMESH__CLUSTER_NAME): unknown \
                 key; did you mean SHARDMESH__CLUSTER__NAME?",
            ),
        ] {
            assert_eq!(
                load_with(variable).unwrap_err().to_string(),
                format!("invalid configuration: {refused}")
            );
        }
        let lower_case = load_with("shardmesh_node_http_bind").unwrap_err();
        assert!(
            lower_case.problem.contains("SHARDMESH__NODE__HTTP_BIND?"),
            "{lower_case}"
        );

        // Not settings: what the tests, benchmarks and CI read (they reach the nodes
        // those start), and names no key resembles.
        for variable in [
            "SHARDMESH_BIN",
            "SHARDMESH_TEST_AMQP_URL",
            "SHARDMESH_TEST_LOG",
            "SHARDMESH_TEST_RACE_FILE",
            "SHARDMESH_TEST_RACE_NAME",
            "SHARDMESH_SCYLLA_URI",
            "SHARDMESH_SCYLLA_KEYSPACE",
            "SHARDMESH_CONSUMER_BENCH_NODE",
            "SHARDMESH_CONSUMER_BENCH_SIM",
            "SHARDMESH_GATEWAY_BENCH_SIM",
            "SHARDMESH_SIM_BENCH_CHILD",
            "SHARDMESH_CLUSTER",
            "SHARDMESHED",
        ] {
            assert_eq!(
                load_with(variable).unwrap(),
                MeshSettings::default(),
                "{variable}"
            );
        }
        // A setting's variable may be written in any case after the prefix, as the
        // config crate reads it.
        assert_eq!(
            load_with("SHARDMESH__cluster__name").unwrap().cluster.name,
            "prod"
        );
    }

    #[test]
    fn the_key_meant_has_the_same_words_or_is_a_few_edits_away() {
        let known: BTreeSet<String> = ["cluster.name", "lease.duration_ms", "node.http_bind"]
            .map(String::from)
            .into();
        assert_eq!(closest_key("cluster_name", &known), Some("cluster.name"));
        assert_eq!(
            closest_key("node.http.bind", &known),
            Some("node.http_bind")
        );
        assert_eq!(closest_key("clustr.nme", &known), Some("cluster.name"));
        assert_eq!(
            closest_key("lease.duration", &known),
            Some("lease.duration_ms")
        );
        assert_eq!(closest_key("gateway.token", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
