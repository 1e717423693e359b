//! The CQL of the Scylla backend, checked without a server.
//!
//! 1. Syntax: `schema.cql` and every statement `ScyllaStore` prepares go through the
//!    tree-sitter CQL grammar (`tree-sitter-cql`, the grammar `cql3-parser` is built on;
//!    driven directly because `cql3-parser`'s AST builder panics on input with error
//!    nodes, for example on `!=`). The grammar lacks several valid constructs. Where it
//!    cannot parse one, the CQL is not bent to suit it: [`GAPS`] names each missing
//!    construct with its reason, [`UNCHECKED`] says which statements need which gaps,
//!    and the check rewrites exactly those constructs into a form the grammar knows, so
//!    the rest of the statement is still checked. Every listed gap must be needed, so
//!    the list cannot rot.
//! 2. Names: a small tokenizer reads the tables and types of `schema.cql` and checks that
//!    every table and column a statement names exists, that every statement restricts
//!    its table's whole partition key (no scans), that tables written with LWT are never
//!    written without it, and that the schema holds nothing no statement uses.

use std::collections::{BTreeMap, BTreeSet};

use shardmesh_store::ScyllaStore;

/// A construct the grammar cannot parse, and how the check rewrites it to parse the rest.
struct Gap {
    name: &'static str,
    reason: &'static str,
    rewrite: fn(&str) -> String,
}

const GAPS: &[Gap] = &[
    Gap {
        name: "bind marker in SET",
        reason: "`assignment_element` accepts only constants and collection literals on the \
                 right of `=`, not `?`",
        rewrite: |cql| {
            let (Some(set), Some(r#where)) = (cql.find(" SET "), cql.find(" WHERE ")) else {
                return cql.to_owned();
            };
            let assignments = cql[set..r#where].replace("= ?", "= 0");
            format!("{}{assignments}{}", &cql[..set], &cql[r#where..])
        },
    },
    Gap {
        name: "IN with a bind marker",
        reason: "`relation_element` accepts `IN (` constants or names `)` only, not `IN ?`",
        rewrite: |cql| cql.replace(" IN ?", " IN ('k')"),
    },
    Gap {
        name: "LIMIT with a bind marker",
        reason: "`limit_spec` accepts a decimal literal only",
        rewrite: |cql| cql.replace("LIMIT ?", "LIMIT 1"),
    },
    Gap {
        name: "USING TTL with a bind marker",
        reason: "`using_ttl_timestamp` accepts a decimal literal only",
        rewrite: |cql| cql.replace("USING TTL ?", "USING TTL 1"),
    },
    Gap {
        name: "!= in a condition",
        reason: "`comparative_operators` lacks `!=`",
        rewrite: |cql| cql.replace(" != ", " = "),
    },
    Gap {
        name: "nested type parameters",
        reason: "`data_type_definition` allows only plain type names between `<` and `>`, \
                 so `frozen<map<bigint, frozen<dedup_mark>>>` cannot be written",
        rewrite: flatten_nested_types,
    },
    Gap {
        name: "STATIC column",
        reason: "`column_definition` has no STATIC modifier",
        rewrite: |cql| cql.replace(" STATIC,", ","),
    },
    Gap {
        name: "composite partition key without clustering columns",
        reason: "`composite_key` requires `, clustering columns` after `(partition key)`",
        rewrite: |cql| {
            cql.replace(
                "PRIMARY KEY ((cluster, lease_key))",
                "PRIMARY KEY ((cluster, lease_key), gap)",
            )
        },
    },
    Gap {
        name: "keyspace option other than replication",
        reason: "`create_keyspace` knows `replication` and `durable_writes` only, not ScyllaDB's \
                 `tablets`",
        rewrite: |cql| cql.replace(" AND tablets = {'enabled': false}", ""),
    },
    Gap {
        name: "integer table option",
        reason: "`table_option_value` and `option_hash_item` accept strings and floats, not \
                 integers such as `default_time_to_live = 2592000`",
        rewrite: quote_integer_options,
    },
];

/// The statements the grammar cannot parse as written, and the gaps each one needs.
const UNCHECKED: &[(&str, &[&str])] = &[
    (
        "schema: keyspace",
        &["keyspace option other than replication"],
    ),
    (
        "schema: table leases",
        &[
            "nested type parameters",
            "composite partition key without clustering columns",
        ],
    ),
    ("schema: table identify", &["STATIC column"]),
    ("schema: table actions", &["integer table option"]),
    ("schema: table action_days", &["integer table option"]),
    ("leases_select_in", &["IN with a bind marker"]),
    ("lease_take", &["bind marker in SET"]),
    ("lease_renew", &["bind marker in SET"]),
    ("lease_release", &["bind marker in SET"]),
    ("identify_set_budget", &["bind marker in SET"]),
    ("identify_grant_counted", &["bind marker in SET"]),
    ("identify_grant_paced", &["bind marker in SET"]),
    ("identify_delete_budget", &["!= in a condition"]),
    ("node_upsert", &["USING TTL with a bind marker"]),
    ("actions_select", &["LIMIT with a bind marker"]),
];

/// Every statement to check: the schema's, named by what they create, then the store's.
fn all_cql() -> Vec<(String, String)> {
    let schema = ScyllaStore::schema_statements().into_iter().map(|cql| {
        let words: Vec<&str> = cql.split_whitespace().collect();
        let name = match words.as_slice() {
            ["CREATE", "KEYSPACE", ..] => "schema: keyspace".to_owned(),
            ["USE", ..] => "schema: use".to_owned(),
            ["CREATE", kind, "IF", "NOT", "EXISTS", name, ..] => {
                format!("schema: {} {name}", kind.to_lowercase())
            }
            _ => panic!("unexpected schema statement: {cql}"),
        };
        (name, cql)
    });
    let store = ScyllaStore::all_statements()
        .iter()
        .map(|&(name, cql)| (name.to_owned(), cql.to_owned()));
    schema.chain(store).collect()
}

/// The syntax errors the grammar finds in `cql`, each with the text around it.
fn syntax_errors(cql: &str) -> Vec<String> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_cql::language())
        .expect("the CQL grammar loads");
    let tree = parser.parse(cql, None).expect("the parser returns a tree");
    let mut errors = Vec::new();
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let start = node.start_byte().saturating_sub(10);
            let end = (node.end_byte() + 10).min(cql.len());
            errors.push(format!(
                "{} at byte {}: …{}…",
                if node.is_missing() {
                    "missing token"
                } else {
                    "error"
                },
                node.start_byte(),
                &cql[start..end]
            ));
        }
        stack.extend(node.children(&mut cursor));
    }
    errors
}

fn gap(name: &str) -> &'static Gap {
    GAPS.iter()
        .find(|gap| gap.name == name)
        .unwrap_or_else(|| panic!("UNCHECKED names an unknown gap {name:?}"))
}

#[test]
fn every_statement_parses_or_its_grammar_gaps_are_recorded() {
    let statements = all_cql();
    let names: BTreeSet<&str> = statements.iter().map(|(name, _)| name.as_str()).collect();
    for (name, _) in UNCHECKED {
        assert!(
            names.contains(name),
            "UNCHECKED names no statement {name:?}"
        );
    }
    let mut failures = Vec::new();
    for (name, cql) in &statements {
        let errors = syntax_errors(cql);
        let Some((_, gaps)) = UNCHECKED.iter().find(|(unchecked, _)| unchecked == name) else {
            if !errors.is_empty() {
                failures.push(format!("{name}: {errors:?}\n    {cql}"));
            }
            continue;
        };
        if errors.is_empty() {
            failures.push(format!("{name} parses now: remove it from UNCHECKED"));
            continue;
        }
        let mut rewritten = cql.clone();
        for &name_of_gap in *gaps {
            let next = (gap(name_of_gap).rewrite)(&rewritten);
            if next == rewritten {
                failures.push(format!("{name}: gap {name_of_gap:?} changes nothing"));
            }
            rewritten = next;
        }
        let left = syntax_errors(&rewritten);
        if !left.is_empty() {
            failures.push(format!(
                "{name}: errors besides its recorded gaps: {left:?}\n    {rewritten}"
            ));
        }
        // Each gap must be needed: without its rewrite, the statement still fails.
        for &skipped in *gaps {
            let mut partial = cql.clone();
            for &name_of_gap in gaps.iter().filter(|&&other| other != skipped) {
                partial = (gap(name_of_gap).rewrite)(&partial);
            }
            if syntax_errors(&partial).is_empty() {
                failures.push(format!("{name}: gap {skipped:?} is not needed"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_grammar_gaps_are_listed_with_reasons() {
    // Printed so the test log says what the grammar could not check.
    for gap in GAPS {
        let users: Vec<&str> = UNCHECKED
            .iter()
            .filter(|(_, gaps)| gaps.contains(&gap.name))
            .map(|(name, _)| *name)
            .collect();
        assert!(
            !users.is_empty(),
            "gap {:?} is used by no statement",
            gap.name
        );
        println!(
            "not checked by the grammar: {} ({}) in {}",
            gap.name,
            gap.reason,
            users.join(", ")
        );
    }
}

/// The grammar's own view of a handful of constructs, so a grammar upgrade that fixes a
/// gap (or breaks a construct the statements rely on) shows up here first.
#[test]
fn the_grammar_knows_the_constructs_the_checks_rely_on() {
    for ok in [
        "INSERT INTO t (a) VALUES (?) IF NOT EXISTS",
        "UPDATE t SET a = 0 WHERE b = ? IF c = ? AND d = null",
        "DELETE FROM t WHERE a = ? IF EXISTS",
        "SELECT a FROM t WHERE a = ? AND b = ?",
        "CREATE TYPE IF NOT EXISTS m (a bigint, b text)",
    ] {
        assert_eq!(syntax_errors(ok), Vec::<String>::new(), "{ok}");
    }
    for gap in [
        "UPDATE t SET a = ? WHERE b = ?",
        "SELECT a FROM t WHERE a = ? LIMIT ?",
        "CREATE TABLE t (a text, b text, PRIMARY KEY ((a, b)))",
    ] {
        assert!(!syntax_errors(gap).is_empty(), "the grammar learned {gap}");
    }
}

/// Replaces every type with nested parameters (`frozen<map<bigint, frozen<x>>>`) by
/// `blob`.
fn flatten_nested_types(cql: &str) -> String {
    let mut out = String::new();
    let mut rest = cql;
    while let Some(open) = rest.find('<') {
        let mut depth = 0;
        let mut nested = false;
        let mut close = open;
        for (offset, c) in rest[open..].char_indices() {
            match c {
                '<' => {
                    depth += 1;
                    nested |= depth > 1;
                }
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        let name_start = rest[..open]
            .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .map_or(0, |i| i + 1);
        out.push_str(&rest[..name_start]);
        if nested {
            out.push_str("blob");
        } else {
            out.push_str(&rest[name_start..=close]);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Quotes integer values of table options (`= 2592000`, `'window_size': 1`).
fn quote_integer_options(cql: &str) -> String {
    let Some(with) = cql.find(" WITH ") else {
        return cql.to_owned();
    };
    let (head, options) = cql.split_at(with);
    let mut out = String::from(head);
    let mut chars = options.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        let after_separator = previous == '=' || previous == ':';
        if c == ' ' && after_separator && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str(" '");
            while let Some(&digit) = chars.peek().filter(|d| d.is_ascii_digit()) {
                out.push(digit);
                chars.next();
            }
            out.push('\'');
            previous = '\'';
            continue;
        }
        out.push(c);
        if c != ' ' {
            previous = c;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Names: the schema as a small model, and every statement checked against it.
// ---------------------------------------------------------------------------------------

/// A table of `schema.cql`.
#[derive(Debug, Default)]
struct Table {
    /// Column name to CQL type, as written.
    columns: BTreeMap<String, String>,
    partition_key: Vec<String>,
    clustering: Vec<String>,
}

#[derive(Debug, Default)]
struct Schema {
    tables: BTreeMap<String, Table>,
    types: BTreeMap<String, BTreeMap<String, String>>,
}

const NATIVE_TYPES: &[&str] = &[
    "ascii",
    "bigint",
    "blob",
    "boolean",
    "date",
    "decimal",
    "double",
    "float",
    "inet",
    "int",
    "smallint",
    "text",
    "time",
    "timestamp",
    "timeuuid",
    "tinyint",
    "uuid",
    "varchar",
    "varint",
    "frozen",
    "map",
    "set",
    "list",
    "tuple",
];

/// Splits `text` at commas that are not inside `()` or `<>`.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0_i32;
    for c in text.chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts
        .into_iter()
        .map(|part| part.trim().to_owned())
        .collect()
}

/// The text between the first `(` after `start` and its matching `)`.
fn parenthesized(text: &str) -> &str {
    let open = text.find('(').expect("an opening parenthesis");
    let mut depth = 0;
    for (offset, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + offset];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {text}")
}

fn names(list: &str) -> Vec<String> {
    list.split(',').map(|name| name.trim().to_owned()).collect()
}

fn parse_schema() -> Schema {
    let mut schema = Schema::default();
    for cql in ScyllaStore::schema_statements() {
        let words: Vec<&str> = cql.split_whitespace().collect();
        match words.as_slice() {
            ["CREATE", "TABLE", "IF", "NOT", "EXISTS", name, ..] => {
                let mut table = Table::default();
                for element in split_top_level(parenthesized(&cql)) {
                    if let Some(key) = element.strip_prefix("PRIMARY KEY") {
                        let key = parenthesized(key).trim();
                        if let Some(rest) = key.strip_prefix('(') {
                            let close = rest.find(')').expect("composite key closes");
                            table.partition_key = names(&rest[..close]);
                            let clustering = rest[close + 1..].trim_start_matches(',').trim();
                            if !clustering.is_empty() {
                                table.clustering = names(clustering);
                            }
                        } else {
                            let mut key = names(key).into_iter();
                            table.partition_key = vec![key.next().expect("a partition key")];
                            table.clustering = key.collect();
                        }
                    } else {
                        let (column, column_type) =
                            element.split_once(' ').expect("column and type");
                        let column_type = column_type.trim_end_matches(" STATIC");
                        let previous = table.columns.insert(column.into(), column_type.into());
                        assert!(previous.is_none(), "{name}.{column} declared twice");
                    }
                }
                schema.tables.insert((*name).to_owned(), table);
            }
            ["CREATE", "TYPE", "IF", "NOT", "EXISTS", name, ..] => {
                let fields = split_top_level(parenthesized(&cql))
                    .into_iter()
                    .map(|field| {
                        let (name, field_type) = field.split_once(' ').expect("field and type");
                        (name.to_owned(), field_type.to_owned())
                    })
                    .collect();
                schema.types.insert((*name).to_owned(), fields);
            }
            ["CREATE", "KEYSPACE", ..] | ["USE", ..] => {}
            _ => panic!("unexpected schema statement: {cql}"),
        }
    }
    schema
}

/// The identifiers of a statement, in order, and the punctuation that follows each.
fn tokens(cql: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = cql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut literal = String::from("'");
            for c in chars.by_ref() {
                literal.push(c);
                if c == '\'' {
                    break;
                }
            }
            tokens.push(literal);
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                word.push(c);
                chars.next();
            }
            tokens.push(word);
        } else {
            chars.next();
            let mut symbol = c.to_string();
            if let Some(&next) = chars
                .peek()
                .filter(|&&next| next == '=' && "!<>".contains(c))
            {
                symbol.push(next);
                chars.next();
            }
            tokens.push(symbol);
        }
    }
    tokens
}

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "IN", "INSERT", "INTO", "VALUES", "IF", "NOT", "EXISTS",
    "UPDATE", "SET", "DELETE", "USING", "TTL", "LIMIT", "null",
];

/// What a store statement does to which table, and the columns it names.
struct Use {
    table: String,
    writes: bool,
    conditional: bool,
    columns: Vec<String>,
    restricted: Vec<String>,
}

fn analyse(cql: &str) -> Use {
    let tokens = tokens(cql);
    let position = |word: &str| tokens.iter().position(|token| token == word);
    let table_at = match tokens[0].as_str() {
        "SELECT" | "DELETE" => position("FROM").expect("FROM") + 1,
        "INSERT" => position("INTO").expect("INTO") + 1,
        "UPDATE" => 1,
        other => panic!("unexpected statement kind {other}: {cql}"),
    };
    let table = tokens[table_at].clone();
    assert_ne!(
        tokens.get(table_at + 1).map(String::as_str),
        Some("."),
        "{cql}: keyspace"
    );
    let columns = tokens
        .iter()
        .enumerate()
        .filter(|&(index, token)| {
            index != table_at
                && token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && !KEYWORDS.contains(&token.as_str())
        })
        .map(|(_, token)| token.clone())
        .collect();
    // An INSERT names its whole primary key in its column list; other statements
    // restrict it in WHERE, which ends where the conditions (IF) or the LIMIT begin.
    let restricted = match position("WHERE") {
        None if tokens[0] == "INSERT" => {
            let close = position(")").expect("INSERT lists its columns");
            tokens[table_at + 1..close]
                .iter()
                .filter(|token| token.starts_with(|c: char| c.is_ascii_alphabetic()))
                .cloned()
                .collect()
        }
        None => panic!("no WHERE clause: {cql}"),
        Some(where_at) => {
            let clause: Vec<&String> = tokens[where_at + 1..]
                .iter()
                .take_while(|token| *token != "IF" && *token != "LIMIT")
                .collect();
            clause
                .windows(2)
                .filter(|pair| *pair[1] == "=" || *pair[1] == "IN")
                .map(|pair| pair[0].clone())
                .collect()
        }
    };
    Use {
        table,
        writes: tokens[0] != "SELECT",
        conditional: position("IF").is_some(),
        columns,
        restricted,
    }
}

#[test]
fn every_table_and_column_a_statement_names_exists_in_the_schema() {
    let schema = parse_schema();
    let mut failures = Vec::new();
    for &(name, cql) in ScyllaStore::all_statements() {
        let statement = analyse(cql);
        let Some(table) = schema.tables.get(&statement.table) else {
            failures.push(format!(
                "{name}: no table {:?} in schema.cql",
                statement.table
            ));
            continue;
        };
        for column in &statement.columns {
            if !table.columns.contains_key(column) {
                failures.push(format!("{name}: no column {}.{column}", statement.table));
            }
        }
        for key in &table.partition_key {
            if !statement.restricted.contains(key) {
                failures.push(format!(
                    "{name}: does not restrict partition key column {key} of {}",
                    statement.table
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_is_consistent_and_holds_nothing_unused() {
    let schema = parse_schema();
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for &(_, cql) in ScyllaStore::all_statements() {
        let statement = analyse(cql);
        let table = schema
            .tables
            .get_key_value(&statement.table)
            .map(|(name, _)| name.as_str());
        if let Some(table) = table {
            used.entry(table).or_default().extend(statement.columns);
        }
    }
    let mut failures = Vec::new();
    for (name, table) in &schema.tables {
        for key in table.partition_key.iter().chain(&table.clustering) {
            if !table.columns.contains_key(key) {
                failures.push(format!("{name}: key column {key} is not declared"));
            }
        }
        for (column, column_type) in &table.columns {
            for type_name in tokens(column_type)
                .iter()
                .filter(|token| token.starts_with(|c: char| c.is_ascii_alphabetic()))
            {
                if !NATIVE_TYPES.contains(&type_name.as_str())
                    && !schema.types.contains_key(type_name)
                {
                    failures.push(format!("{name}.{column}: unknown type {type_name}"));
                }
            }
            let Some(columns) = used.get(name.as_str()) else {
                failures.push(format!("table {name} is used by no statement"));
                break;
            };
            if !columns.contains(column) {
                failures.push(format!("{name}.{column} is used by no statement"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Paxos orders LWT writes by ballot and plain writes by client timestamp; mixing both on
/// one row can lose a write. Tables written with LWT must be written only with LWT.
#[test]
fn tables_written_with_lwt_are_never_written_without_it() {
    let mut conditional: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for &(_, cql) in ScyllaStore::all_statements() {
        let statement = analyse(cql);
        if statement.writes {
            conditional
                .entry(statement.table)
                .or_default()
                .insert(statement.conditional);
        }
    }
    let mixed: Vec<&String> = conditional
        .iter()
        .filter(|(_, kinds)| kinds.len() > 1)
        .map(|(table, _)| table)
        .collect();
    assert!(mixed.is_empty(), "tables written both ways: {mixed:?}");
    for table in ["leases", "identify", "cluster_spec"] {
        assert_eq!(
            conditional.get(table).map(|kinds| kinds.contains(&true)),
            Some(true),
            "{table} is written with LWT"
        );
    }
}

#[test]
fn the_tokenizer_reads_columns_and_restrictions() {
    let statement = analyse(
        "UPDATE leases SET owner = ?, lease_until = 0 WHERE cluster = ? AND lease_key IN ? \
         IF epoch = ? AND owner != null",
    );
    assert_eq!(statement.table, "leases");
    assert!(statement.writes && statement.conditional);
    assert_eq!(
        statement.columns,
        [
            "owner",
            "lease_until",
            "cluster",
            "lease_key",
            "epoch",
            "owner"
        ]
    );
    assert_eq!(statement.restricted, ["cluster", "lease_key"]);
    assert_eq!(
        flatten_nested_types("marks frozen<map<bigint, frozen<dedup_mark>>>, b map<int, text>"),
        "marks blob, b map<int, text>"
    );
    assert_eq!(
        quote_integer_options("CREATE TABLE t (a int) WITH x = 5 AND y = {'k': 1, 'u': 'v'}"),
        "CREATE TABLE t (a int) WITH x = '5' AND y = {'k': '1', 'u': 'v'}"
    );
}

/// The `cqlsh` queries README.md gives operators (lines `cq "…"` in its container
/// section): each parses and names only tables and columns of `schema.cql`, so the
/// documentation cannot drift from the schema. Scans are allowed here (ALLOW
/// FILTERING over one cluster's leases is what a person at a prompt wants).
#[test]
fn the_readme_cqlsh_queries_name_real_tables_and_columns() {
    const QUERY_WORDS: &[&str] = &["ALLOW", "FILTERING", "DISTINCT"];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md is readable");
    let queries: Vec<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("cq \""))
        .map(|rest| {
            let query = rest.split_once('"').map_or(rest, |(query, _)| query);
            // The shell fills in today's date.
            query.replace("$(date -u +%F)", "2026-12-06")
        })
        .collect();
    assert!(queries.len() >= 5, "README's cq lines: {queries:?}");
    let schema = parse_schema();
    let mut failures = Vec::new();
    for query in &queries {
        let errors = syntax_errors(&format!("{query};"));
        if !errors.is_empty() {
            failures.push(format!("{query}: {}", errors.join("; ")));
        }
        let statement = analyse(query);
        let Some(table) = schema.tables.get(&statement.table) else {
            failures.push(format!("{query}: no table {:?}", statement.table));
            continue;
        };
        for column in statement
            .columns
            .iter()
            .filter(|column| !QUERY_WORDS.contains(&column.as_str()))
        {
            if !table.columns.contains_key(column) {
                failures.push(format!("{query}: no column {}.{column}", statement.table));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
