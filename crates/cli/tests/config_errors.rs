//! A configuration mistake as a user makes one: the real `shardmesh` process refuses to
//! start, exits 1, and its stderr is one line saying what is wrong and where.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node that should have refused its configuration may run before the test
/// gives up on it (a node that accepts it waits for its broker forever).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// Where no broker listens.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// `shardmesh ARGS` in `dir` with only `variables` of the `SHARDMESH` ones set (and no
/// HTTP port, so a node that wrongly starts takes none); its exit code (`None` when it
/// was still running at the deadline) and its stderr.
fn shardmesh(dir: &Path, args: &[&str], variables: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardmesh"));
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_uppercase()
            .starts_with("SHARDMESH")
        {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("SHARDMESH__NODE__HTTP_BIND", "")
        .envs(variables.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shardmesh binary runs");
    let deadline = Instant::now() + REFUSAL_DEADLINE;
    let code = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().expect("the child can be killed");
            child.wait().expect("the killed child is reaped");
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

/// A directory holding `bad.toml` with `text`, after a broker address where none
/// listens (a node that wrongly starts does nothing; its store is in the directory).
fn config_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let harmless = format!("[broker]\nurl = \"{NO_BROKER}\"\n");
    std::fs::write(dir.path().join("bad.toml"), format!("{harmless}{text}")).unwrap();
    dir
}

#[track_caller]
fn assert_refused(outcome: (Option<i32>, String), line: &str) {
    let (code, stderr) = outcome;
    assert_eq!(code, Some(1), "exit code; stderr: {stderr}");
    assert_eq!(stderr, format!("error: invalid configuration: {line}\n"));
}

#[test]
fn a_file_value_of_another_type_than_its_key_stops_the_node() {
    let gateway = config_dir("[gateway]\ntoken = \"t\"\nintents = true\n");
    assert_refused(
        shardmesh(gateway.path(), &["gateway", "--config", "bad.toml"], &[]),
        "gateway.intents (from bad.toml line 5): expected an integer, found the boolean true",
    );
    let ctl = config_dir("[node]\ncapacity = \"2\"\n");
    assert_refused(
        shardmesh(ctl.path(), &["ctl", "status", "--config", "bad.toml"], &[]),
        "node.capacity (from bad.toml line 4): expected an integer, found the string \"2\"",
    );
}

#[test]
fn a_toml_syntax_error_or_a_missing_file_stops_the_node_naming_the_file() {
    let broken = config_dir("[node]\nhttp_bind = \"\n");
    assert_refused(
        shardmesh(
            broken.path(),
            &["ctl", "status", "--config", "bad.toml"],
            &[],
        ),
        "bad.toml line 4, column 14: not valid TOML: invalid basic string, expected `\"`",
    );
    let empty = tempfile::tempdir().unwrap();
    let args = ["consumer", "--sink", "stdout", "--config", "nope.toml"];
    assert_refused(
        shardmesh(empty.path(), &args, &[]),
        &format!(
            "nope.toml: the file does not exist (looked for in the working directory {})",
            empty.path().canonicalize().unwrap().display()
        ),
    );
}

#[test]
fn a_variable_that_misses_a_setting_stops_the_node_naming_the_one_meant() {
    let dir = config_dir("");
    let args = ["ctl", "status", "--config", "bad.toml"];
    assert_refused(
        shardmesh(dir.path(), &args, &[("SHARDMESH_CLUSTER_NAME", "prod")]),
        "environment variable SHARDMESH_CLUSTER_NAME: names no setting; did you mean \
         SHARDMESH__CLUSTER__NAME? (two underscores after SHARDMESH and between the levels \
         of the key)",
    );
    assert_refused(
        shardmesh(dir.path(), &args, &[("SHARDMESH__CLUSTR__NAME", "prod")]),
        "clustr.name (from environment variable SHARDMESH__CLUSTR__NAME): unknown key; did \
         you mean SHARDMESH__CLUSTER__NAME?",
    );
}
