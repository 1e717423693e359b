//! The settings file, read and parsed here rather than by the config crate: a mistake
//! names the file as the user gave it and the line, and a value is held to its key's
//! type (the config crate turns `"2"`, `2.5` and `true` into integers without a word).

use std::io::ErrorKind;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::SettingsError;

/// A TOML settings file that parsed, with where each of its values is.
pub(super) struct SettingsFile {
    /// The path as the user gave it: the config crate's, rewritten relative to the
    /// working directory, is harder to recognise.
    name: String,
    text: String,
    values: Vec<FileValue>,
}

/// One value of the file: a key's, or an element of a key's list.
struct FileValue {
    /// The dotted key; an element carries its list's key.
    key: String,
    /// Byte range of the value in the text.
    span: Range<usize>,
    /// The value for a person: `the string "2"`, `the number 2.5`, `a list`.
    found: String,
    /// Whether this is the key's own value rather than an element of it.
    whole: bool,
}

impl SettingsFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// The file does not exist or cannot be read (relative paths are said to be looked
    /// for in the working directory), or it is not TOML (with line and column).
    pub(super) fn read(path: &Path) -> Result<Self, SettingsError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| SettingsError {
            key: String::new(),
            origin: Some(name.clone()),
            problem: unreadable(path, &error),
        })?;
        let document = DeTable::parse(&text).map_err(|error| {
            let origin = error.span().map_or_else(
                || name.clone(),
                |span| {
                    let (line, column) = position(&text, span.start);
                    format!("{name} line {line}, column {column}")
                },
            );
            SettingsError {
                key: String::new(),
                origin: Some(origin),
                problem: format!("not valid TOML: {}", one_line(error.message())),
            }
        })?;
        let mut values = Vec::new();
        collect_values("", document.get_ref(), &text, &mut values);
        Ok(Self { name, text, values })
    }

    /// The text, for the config crate to merge.
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// `shardmesh.toml line 12` when the file sets `key`.
    pub(super) fn locate(&self, key: &str) -> Option<String> {
        let value = self
            .values
            .iter()
            .find(|value| value.whole && value.key == key)?;
        Some(self.at(value.span.start))
    }

    /// Deserializes the file alone into `T` the way TOML types it, so a value of
    /// another type than its key's is refused instead of converted. Keys of several
    /// types keep them: the check is `T`'s own `Deserialize`, so an `Option` takes its
    /// inner type, a list its elements', and a string holding digits stays a string.
    /// Sections `T` does not read are skipped.
    ///
    /// # Errors
    ///
    /// The first value `T` refuses, with its key and line.
    pub(super) fn check_types<T: DeserializeOwned>(&self) -> Result<(), SettingsError> {
        let refused = Deserializer::parse(&self.text).and_then(T::deserialize);
        let Err(error) = refused else {
            return Ok(());
        };
        let at = error.span().map(|span| span.start);
        // The innermost value at the error: a list's element rather than the list.
        let value = self
            .values
            .iter()
            .filter(|value| at.is_some_and(|at| value.span.contains(&at)))
            .min_by_key(|value| value.span.len());
        Err(SettingsError {
            key: value.map(|value| value.key.clone()).unwrap_or_default(),
            origin: Some(at.map_or_else(|| self.name.clone(), |at| self.at(at))),
            problem: describe_refusal(error.message(), value.map(|value| value.found.as_str())),
        })
    }

    /// `shardmesh.toml line 12` for byte `offset` of the text.
    fn at(&self, offset: usize) -> String {
        format!("{} line {}", self.name, position(&self.text, offset).0)
    }
}

/// Why a file cannot be read, for a person: a relative path is looked for in the
/// working directory, which is worth saying when the file is not there.
fn unreadable(path: &Path, error: &std::io::Error) -> String {
    if error.kind() != ErrorKind::NotFound {
        return format!("cannot be read: {error}");
    }
    match std::env::current_dir() {
        Ok(dir) if path.is_relative() => format!(
            "the file does not exist (looked for in the working directory {})",
            dir.display()
        ),
        _ => "the file does not exist".to_owned(),
    }
}

/// Every value under `table`, with its dotted key below `prefix`.
fn collect_values(prefix: &str, table: &DeTable<'_>, text: &str, out: &mut Vec<FileValue>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.get_ref().to_string()
        } else {
            format!("{prefix}.{}", name.get_ref())
        };
        // `[store.scylla]`, `scylla = { … }` and `scylla.nodes = …` are the same table.
        if let DeValue::Table(inner) = value.get_ref() {
            collect_values(&key, inner, text, out);
            continue;
        }
        if let DeValue::Array(items) = value.get_ref() {
            out.extend(items.iter().map(|item| FileValue {
                key: key.clone(),
                span: item.span(),
                found: describe_value(item.get_ref(), &text[item.span()]),
                whole: false,
            }));
        }
        out.push(FileValue {
            found: describe_value(value.get_ref(), &text[value.span()]),
            span: value.span(),
            key,
            whole: true,
        });
    }
}

/// A value as a person reads it in an error, on one line: its TOML type and what the
/// file says (a string quoted and escaped, whichever TOML quotes it had).
fn describe_value(value: &DeValue<'_>, written: &str) -> String {
    match value {
        DeValue::String(text) => format!("the string {text:?}"),
        DeValue::Integer(_) => format!("the integer {written}"),
        DeValue::Float(_) => format!("the number {written}"),
        DeValue::Boolean(_) => format!("the boolean {written}"),
        DeValue::Datetime(_) => format!("the date-time {written}"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// serde's `invalid type: string "2", expected u32` as `expected an integer, found the
/// string "2"`; other refusals (an unknown variant, a bad address) as serde words them.
fn describe_refusal(message: &str, found: Option<&str>) -> String {
    let parsed = message
        .strip_prefix("invalid type: ")
        .map(|rest| (rest, false))
        .or_else(|| {
            message
                .strip_prefix("invalid value: ")
                .map(|rest| (rest, true))
        });
    let (Some((rest, out_of_range)), Some(found)) = (parsed, found) else {
        return one_line(message);
    };
    let Some((_, expected)) = rest.split_once(", expected ") else {
        return one_line(message);
    };
    format!(
        "expected {}, found {found}",
        plain_type(expected, out_of_range)
    )
}

/// serde's name of a type in plain words; integers with their bounds when a value
/// fell outside them.
fn plain_type(expected: &str, out_of_range: bool) -> String {
    let bounds = match expected {
        "u8" => Some((0, i128::from(u8::MAX))),
        "u16" => Some((0, i128::from(u16::MAX))),
        "u32" => Some((0, i128::from(u32::MAX))),
        "u64" | "usize" => Some((0, i128::from(u64::MAX))),
        "i8" => Some((i128::from(i8::MIN), i128::from(i8::MAX))),
        "i16" => Some((i128::from(i16::MIN), i128::from(i16::MAX))),
        "i32" => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        "i64" | "isize" => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        _ => None,
    };
    match (bounds, expected) {
        (Some((min, max)), _) if out_of_range => format!("an integer {min}..={max}"),
        (Some(_), _) => "an integer".to_owned(),
        (None, "f32" | "f64") => "a number".to_owned(),
        (None, "a sequence") => "a list".to_owned(),
        (None, "path string") => "a string".to_owned(),
        (None, struct_name) if struct_name.starts_with("struct ") => "a table".to_owned(),
        (None, other) => other.to_owned(),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// A message on one line: the error is printed as one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use crate::MeshSettings;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn refusal(text: &str) -> String {
        let config = file(text);
        let error = MeshSettings::load_from(Some(config.path()), []).unwrap_err();
        // The temporary path, as the user would have given it, reads `FILE`.
        error
            .to_string()
            .replace(&config.path().display().to_string(), "FILE")
    }

    #[test]
    fn a_value_of_another_type_than_its_key_is_refused_with_the_file_and_line() {
        for (text, refused) in [
            (
                "[node]\nid = \"a\"\ncapacity = \"2\"\n",
                "node.capacity (from FILE line 3): expected an integer, found the string \"2\"",
            ),
            (
                "[node]\ncapacity = '''\n2\n'''\n",
                "node.capacity (from FILE line 2): expected an integer, found the string \"2\\n\"",
            ),
            (
                "[node]\ncapacity = 2.5\n",
                "node.capacity (from FILE line 2): expected an integer, found the number 2.5",
            ),
            (
                "[node]\ncapacity = true\n",
                "node.capacity (from FILE line 2): expected an integer, found the boolean true",
            ),
            (
                "[node]\ncapacity = -1\n",
                "node.capacity (from FILE line 2): expected an integer 0..=4294967295, found \
                 the integer -1",
            ),
            (
                "[cluster]\nname = 5\n",
                "cluster.name (from FILE line 2): expected a string, found the integer 5",
            ),
            (
                "[store.scylla]\nnodes = \"a:9042\"\n",
                "store.scylla.nodes (from FILE line 2): expected a list, found the string \
                 \"a:9042\"",
            ),
            (
                "[store.scylla]\nnodes = [\"a:9042\",\n  7]\n",
                "store.scylla.nodes (from FILE line 3): expected a string, found the integer 7",
            ),
            (
                "[store.scylla]\nusername = 5\n",
                "store.scylla.username (from FILE line 2): expected a string, found the \
                 integer 5",
            ),
            (
                "node = 5\n",
                "node (from FILE line 1): is a section, not a value; set its keys, e.g. \
                 node.capacity",
            ),
        ] {
            assert_eq!(
                refusal(text),
                format!("invalid configuration: {refused}"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn keys_of_several_types_keep_them_and_range_checks_name_the_line() {
        // An option takes its inner type, a string of digits stays a string (a snowflake
        // as a node id), an inline table is a section like any other.
        let config = file(
            "[node]\nid = \"1234567890123456789\"\n[store]\n\
             scylla = { username = \"bot\", nodes = [\"a:9042\"] }\n",
        );
        let settings = MeshSettings::load_from(Some(config.path()), []).unwrap();
        assert_eq!(settings.node.id, "1234567890123456789");
        assert_eq!(settings.store.scylla.username.as_deref(), Some("bot"));
        assert_eq!(settings.store.scylla.nodes, ["a:9042"]);
        // From the environment every value is a string: a number is read from one.
        let env = [("SHARDMESH__NODE__CAPACITY".to_owned(), "2".to_owned())];
        assert_eq!(MeshSettings::load_from(None, env).unwrap().node.capacity, 2);
        assert_eq!(
            refusal("[node]\n\ncapacity = 0\n"),
            "invalid configuration: node.capacity (from FILE line 3): 0 is outside 1..=1000"
        );
    }

    #[test]
    fn a_toml_syntax_error_names_the_file_line_and_column_on_one_line() {
        assert_eq!(
            refusal("[cluster]\nname = \"prod\npartitions = 4\n"),
            "invalid configuration: FILE line 2, column 13: not valid TOML: invalid basic \
             string, expected `\"`"
        );
        assert_eq!(
            refusal("[cluster]\npartitions 4\n"),
            "invalid configuration: FILE line 2, column 12: not valid TOML: key with no \
             value, expected `=`"
        );
    }

    #[test]
    fn a_missing_file_is_said_not_to_exist_and_where_it_was_looked_for() {
        let absolute = Path::new("/nonexistent/shardmesh.toml");
        assert_eq!(
            MeshSettings::load_from(Some(absolute), [])
                .unwrap_err()
                .to_string(),
            "invalid configuration: /nonexistent/shardmesh.toml: the file does not exist"
        );
        let relative = Path::new("nonexistent.toml");
        assert_eq!(
            MeshSettings::load_from(Some(relative), [])
                .unwrap_err()
                .to_string(),
            format!(
                "invalid configuration: nonexistent.toml: the file does not exist (looked for \
                 in the working directory {})",
                std::env::current_dir().unwrap().display()
            )
        );
        let directory = tempfile::tempdir().unwrap();
        let error = MeshSettings::load_from(Some(directory.path()), []).unwrap_err();
        assert!(error.problem.starts_with("cannot be read: "), "{error}");
    }
}
