//! The Rust types the store binds and reads, checked against the CQL types of
//! `schema.cql` without a server.
//!
//! The driver type-checks bound values against the bind markers' types when it
//! serializes, and rows against the result columns' types when it deserializes; at run
//! time both come from the server's prepare response. Here they come from `schema.cql`
//! instead: each statement's bind markers and selected columns get the types of the
//! columns they name, and the very checks the driver runs are run on the row types the
//! store reads and on values shaped like the ones it binds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use scylla::deserialize::row::DeserializeRow;
use scylla::frame::response::result::{
    CollectionType, ColumnSpec, ColumnType, NativeType, TableSpec, UserDefinedType,
};
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::writers::RowWriter;
use scylla::value::{CqlDate, CqlTimestamp, CqlTimeuuid};

use super::identify::IdentifyRow;
use super::lease_row::{LeaseRow, StateBinds};
use super::registry::{ActionRow, NodeRow};
use super::schema::schema_statements;
use super::spec::{IdentityRow, SpecRow};
use super::statements::{self as cql, all_statements};
use crate::{Checkpoint, DedupMark, LeaseState, ShardSession};

/// Column types by table, and user types by name, as `schema.cql` declares them.
struct Schema {
    tables: BTreeMap<String, BTreeMap<String, String>>,
    types: BTreeMap<String, Vec<(String, String)>>,
}

fn inside_parentheses(text: &str) -> &str {
    let open = text.find('(').expect("(");
    let close = text.rfind(')').expect(")");
    &text[open + 1..close]
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

fn schema() -> Schema {
    let mut schema = Schema {
        tables: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for statement in schema_statements() {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let (is_table, name) = match words.as_slice() {
            ["CREATE", "TABLE", "IF", "NOT", "EXISTS", name, ..] => (true, *name),
            ["CREATE", "TYPE", "IF", "NOT", "EXISTS", name, ..] => (false, *name),
            _ => continue,
        };
        // A table's options follow its column list; only the list matters here.
        let body = statement
            .split(" WITH ")
            .next()
            .expect("a statement before any WITH");
        let columns: Vec<(String, String)> = split_top_level(inside_parentheses(body))
            .into_iter()
            .filter(|element| !element.starts_with("PRIMARY KEY"))
            .map(|element| {
                let (column, column_type) = element.split_once(' ').expect("name and type");
                let column_type = column_type.trim_end_matches(" STATIC");
                (column.to_owned(), column_type.to_owned())
            })
            .collect();
        if is_table {
            schema
                .tables
                .insert(name.to_owned(), columns.into_iter().collect());
        } else {
            schema.types.insert(name.to_owned(), columns);
        }
    }
    schema
}

impl Schema {
    fn column_type(&self, text: &str) -> ColumnType<'static> {
        let text = text.trim();
        if let Some(inner) = text
            .strip_prefix("frozen<")
            .and_then(|rest| rest.strip_suffix('>'))
        {
            return match self.column_type(inner) {
                ColumnType::Collection { typ, .. } => ColumnType::Collection { frozen: true, typ },
                ColumnType::UserDefinedType { definition, .. } => ColumnType::UserDefinedType {
                    frozen: true,
                    definition,
                },
                other => other,
            };
        }
        if let Some(inner) = text
            .strip_prefix("map<")
            .and_then(|rest| rest.strip_suffix('>'))
        {
            let parts = split_top_level(inner);
            return ColumnType::Collection {
                frozen: false,
                typ: CollectionType::Map(
                    Box::new(self.column_type(parts[0])),
                    Box::new(self.column_type(parts[1])),
                ),
            };
        }
        let native = match text {
            "text" => NativeType::Text,
            "bigint" => NativeType::BigInt,
            "int" => NativeType::Int,
            "timestamp" => NativeType::Timestamp,
            "timeuuid" => NativeType::Timeuuid,
            "date" => NativeType::Date,
            udt => {
                let fields = self
                    .types
                    .get(udt)
                    .unwrap_or_else(|| panic!("no type {udt} in schema.cql"));
                return ColumnType::UserDefinedType {
                    frozen: false,
                    definition: Arc::new(UserDefinedType {
                        name: Cow::Owned(udt.to_owned()),
                        keyspace: Cow::Borrowed("shardmesh"),
                        field_types: fields
                            .iter()
                            .map(|(name, field)| {
                                (Cow::Owned(name.clone()), self.column_type(field))
                            })
                            .collect(),
                    }),
                };
            }
        };
        ColumnType::Native(native)
    }

    fn of_column(&self, table: &str, column: &str) -> ColumnType<'static> {
        let text = self
            .tables
            .get(table)
            .and_then(|columns| columns.get(column))
            .unwrap_or_else(|| panic!("no column {table}.{column} in schema.cql"));
        self.column_type(text)
    }
}

fn words(cql: &str) -> Vec<String> {
    cql.replace(['(', ')', ','], " ")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn table_of(words: &[String]) -> &str {
    let after = match words[0].as_str() {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" => "INTO",
        _ => "UPDATE",
    };
    let at = words.iter().position(|word| word == after).expect("table");
    &words[at + 1]
}

/// `(name, type)` of each bind marker of `cql`, in order.
fn bind_markers(schema: &Schema, cql: &str) -> Vec<(String, ColumnType<'static>)> {
    let words = words(cql);
    let table = table_of(&words).to_owned();
    let mut markers = Vec::new();
    if words[0] == "INSERT" {
        let values_at = words
            .iter()
            .position(|word| word == "VALUES")
            .expect("VALUES");
        let columns = &words[3..values_at];
        for (column, value) in columns.iter().zip(&words[values_at + 1..]) {
            if value == "?" {
                markers.push((column.clone(), schema.of_column(&table, column)));
            }
        }
    }
    let in_values = |index: usize| {
        words[0] == "INSERT"
            && words
                .iter()
                .position(|word| word == "VALUES")
                .is_some_and(|at| index > at)
            && !words[..index].iter().any(|word| word == "USING")
    };
    for (index, word) in words.iter().enumerate() {
        if word != "?" || in_values(index) {
            continue;
        }
        let before = words[index - 1].as_str();
        let marker = match before {
            "=" => {
                let column = &words[index - 2];
                (column.clone(), schema.of_column(&table, column))
            }
            "IN" => {
                let column = &words[index - 2];
                let element = schema.of_column(&table, column);
                (
                    format!("in({column})"),
                    ColumnType::Collection {
                        frozen: false,
                        typ: CollectionType::List(Box::new(element)),
                    },
                )
            }
            "LIMIT" => ("[limit]".to_owned(), ColumnType::Native(NativeType::Int)),
            "TTL" => ("[ttl]".to_owned(), ColumnType::Native(NativeType::Int)),
            other => panic!("a bind marker after {other:?} in {cql}"),
        };
        markers.push(marker);
    }
    markers
}

/// `(name, type)` of each column a SELECT returns.
fn selected(schema: &Schema, cql: &str) -> Vec<(String, ColumnType<'static>)> {
    let words = words(cql);
    let table = table_of(&words).to_owned();
    let from = words.iter().position(|word| word == "FROM").expect("FROM");
    words[1..from]
        .iter()
        .map(|column| (column.clone(), schema.of_column(&table, column)))
        .collect()
}

fn specs<'a>(columns: &'a [(String, ColumnType<'static>)]) -> Vec<ColumnSpec<'a>> {
    columns
        .iter()
        .map(|(name, column_type)| {
            ColumnSpec::borrowed(
                name,
                column_type.clone(),
                TableSpec::borrowed("shardmesh", "t"),
            )
        })
        .collect()
}

/// Serializes `values` for `cql`'s bind markers as the driver would before sending.
fn check_binds(schema: &Schema, cql: &str, values: &impl SerializeRow) {
    let markers = bind_markers(schema, cql);
    let specs = specs(&markers);
    let context = RowSerializationContext::from_specs(&specs);
    let mut buffer = Vec::new();
    let mut writer = RowWriter::new(&mut buffer);
    values
        .serialize(&context, &mut writer)
        .unwrap_or_else(|error| panic!("binding {cql}: {error}"));
    assert_eq!(
        writer.value_count(),
        markers.len(),
        "{cql}: one value per marker"
    );
}

/// Type-checks row type `R` against what `cql` selects, as the driver does on receipt.
fn check_row<R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>>(
    schema: &Schema,
    cql: &str,
) {
    let columns = selected(schema, cql);
    R::type_check(&specs(&columns)).unwrap_or_else(|error| panic!("reading {cql}: {error}"));
}

#[test]
fn rows_read_match_the_selected_column_types() {
    let schema = schema();
    check_row::<SpecRow>(&schema, cql::SPEC_SELECT);
    check_row::<IdentityRow>(&schema, cql::CLUSTER_IDENTITY_SELECT);
    check_row::<LeaseRow>(&schema, cql::LEASE_SELECT);
    check_row::<LeaseRow>(&schema, cql::LEASES_SELECT_IN);
    check_row::<(String,)>(&schema, cql::LEASE_KEYS_SELECT);
    check_row::<IdentifyRow>(&schema, cql::IDENTIFY_SELECT);
    check_row::<NodeRow>(&schema, cql::NODES_SELECT);
    check_row::<(CqlDate,)>(&schema, cql::ACTION_DAYS_SELECT);
    check_row::<ActionRow>(&schema, cql::ACTIONS_SELECT);
}

/// Sample values of the types the call sites bind.
const CLUSTER: &str = "c";
const COUNT: i64 = 1;
const TIME: CqlTimestamp = CqlTimestamp(1);
const DAY: CqlDate = CqlDate(1 << 31);

fn id() -> CqlTimeuuid {
    CqlTimeuuid::from(uuid::Uuid::nil())
}

/// The lease statements, bound with values shaped as `leases.rs` shapes them; renew and
/// release with the binds `StateBinds::of` makes for every kind of state.
#[test]
fn lease_values_match_the_bind_marker_types() {
    let schema = schema();
    let (key, owner) = (String::from("shard/1"), String::from("n1"));
    // Also the text of lease_select_serial.
    check_binds(&schema, cql::LEASE_SELECT, &(CLUSTER, &key));
    let keys = [key.clone()];
    check_binds(&schema, cql::LEASES_SELECT_IN, &(CLUSTER, &keys[..]));
    check_binds(
        &schema,
        cql::LEASE_CREATE,
        &(CLUSTER, &key, "n1", COUNT, TIME),
    );
    check_binds(
        &schema,
        cql::LEASE_TAKE,
        &("n1", COUNT, TIME, CLUSTER, &key, COUNT, TIME),
    );
    let states = [
        LeaseState::Empty,
        LeaseState::Shard(ShardSession::default()),
        LeaseState::Partition(Checkpoint {
            offset: Some(3),
            marks: BTreeMap::from([(
                7,
                DedupMark {
                    epoch: 1,
                    session: "s".into(),
                    seq: 2,
                },
            )]),
        }),
    ];
    for state in &states {
        let binds = StateBinds::of(state, "check").expect("binds");
        let saved = (
            binds.kind,
            &binds.session_id,
            &binds.seq,
            &binds.resume_url,
            &binds.stream_offset,
            &binds.marks,
        );
        let (kind, session_id, seq, resume_url, offset, marks) = saved;
        check_binds(
            &schema,
            cql::LEASE_RENEW,
            &(
                TIME, kind, session_id, seq, resume_url, offset, marks, CLUSTER, &key, &owner,
                COUNT,
            ),
        );
        check_binds(
            &schema,
            cql::LEASE_RELEASE,
            &(
                kind, session_id, seq, resume_url, offset, marks, CLUSTER, &key, &owner, COUNT,
            ),
        );
    }
    check_binds(&schema, cql::LEASE_DELETE, &(CLUSTER, &key));
    check_binds(&schema, cql::LEASE_KEY_INSERT, &(CLUSTER, &key));
    check_binds(&schema, cql::LEASE_KEYS_SELECT, &(CLUSTER,));
    check_binds(&schema, cql::LEASE_KEYS_DELETE, &(CLUSTER,));
}

/// The other statements, bound with values shaped as their call sites shape them.
#[test]
fn other_values_match_the_bind_marker_types() {
    let schema = schema();
    let text = String::from("t");
    check_binds(
        &schema,
        cql::SPEC_INSERT,
        &(CLUSTER, COUNT, COUNT, COUNT, TIME),
    );
    check_binds(&schema, cql::SPEC_SELECT, &(CLUSTER,));
    check_binds(&schema, cql::SPEC_DELETE, &(CLUSTER,));
    check_binds(
        &schema,
        cql::CLUSTER_IDENTITY_INSERT,
        &(CLUSTER, "id", TIME),
    );
    check_binds(&schema, cql::CLUSTER_IDENTITY_SELECT, &(CLUSTER,));
    check_binds(&schema, cql::CLUSTER_IDENTITY_DELETE, &(CLUSTER,));
    // Also the text of identify_select_serial.
    check_binds(&schema, cql::IDENTIFY_SELECT, &(CLUSTER,));
    check_binds(
        &schema,
        cql::IDENTIFY_SET_BUDGET,
        &(
            COUNT,
            COUNT,
            TIME,
            CLUSTER,
            Some(COUNT),
            None::<i64>,
            Some(TIME),
        ),
    );
    check_binds(
        &schema,
        cql::IDENTIFY_GRANT_COUNTED,
        &(
            TIME,
            id(),
            COUNT,
            TIME,
            CLUSTER,
            COUNT,
            Some(id()),
            COUNT,
            TIME,
        ),
    );
    check_binds(
        &schema,
        cql::IDENTIFY_GRANT_PACED,
        &(TIME, id(), CLUSTER, COUNT, None::<CqlTimeuuid>),
    );
    check_binds(&schema, cql::IDENTIFY_DELETE_BUCKET, &(CLUSTER, COUNT));
    check_binds(&schema, cql::IDENTIFY_DELETE_BUDGET, &(CLUSTER,));
    let group = Some(text.clone());
    check_binds(
        &schema,
        cql::NODE_UPSERT,
        &(
            CLUSTER,
            &text,
            "gateway",
            &group,
            "ready",
            &None::<String>,
            TIME,
            TIME,
            TIME,
            1_i32,
        ),
    );
    check_binds(&schema, cql::NODES_SELECT, &(CLUSTER,));
    check_binds(&schema, cql::NODES_DELETE, &(CLUSTER,));
    check_binds(&schema, cql::ACTION_DAY_INSERT, &(CLUSTER, DAY));
    check_binds(
        &schema,
        cql::ACTION_INSERT,
        &(CLUSTER, DAY, id(), &text, &text, &text, &text, TIME),
    );
    check_binds(&schema, cql::ACTION_DAYS_SELECT, &(CLUSTER,));
    check_binds(&schema, cql::ACTIONS_SELECT, &(CLUSTER, DAY, 10_i32));
    check_binds(&schema, cql::ACTIONS_DELETE, &(CLUSTER, DAY));
    check_binds(&schema, cql::ACTION_DAYS_DELETE, &(CLUSTER,));
    // Both tests together bind every statement: a new one must be added to one of them.
    // (Two texts are prepared twice, at two consistencies.)
    assert_eq!(all_statements().len(), 33);
}

#[test]
fn a_mismatched_type_is_caught() {
    let schema = schema();
    let result = std::panic::catch_unwind(|| {
        check_binds(&schema, cql::SPEC_SELECT, &(1_i32,));
    });
    assert!(
        result.is_err(),
        "an int bound to a text column was accepted"
    );
}
