//! Ids in the control API's JSON as Discord writes them: strings. A snowflake is above
//! 2^53, where a JavaScript number (an f64) no longer holds every integer, so a client
//! in JavaScript would read a neighbouring id instead. Used with
//! `#[serde(serialize_with = "...")]`.

use std::fmt::Display;

use serde::Serializer;

/// One id as a string: `81384788765712384` → `"81384788765712384"`.
pub(crate) fn one<T: Display, S: Serializer>(id: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// A list of ids as a list of strings.
pub(crate) fn each<T: Display, S: Serializer>(ids: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(ids.iter().map(ToString::to_string))
}
