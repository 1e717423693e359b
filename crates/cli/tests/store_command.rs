//! `shardmesh store init|check` as a user runs them: a real process on a real SQLite file.

use std::path::Path;
use std::process::{Command, Output};

fn shardmesh(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardmesh"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "off")
        .envs(env.iter().copied())
        .output()
        .expect("the shardmesh binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_creates_a_store_that_check_then_reads() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SHARDMESH__STORE__SQLITE__PATH", "store.sqlite")];
    let init = shardmesh(dir.path(), &env, &["store", "init"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    assert_eq!(text(&init.stdout), "sqlite store ready: store.sqlite\n");
    let check = shardmesh(dir.path(), &env, &["store", "check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("cluster default: not created yet"));
}

#[test]
fn a_corrupt_store_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.sqlite"), [0x5a_u8; 8192]).unwrap();
    let env = [("SHARDMESH__STORE__SQLITE__PATH", "store.sqlite")];
    let check = shardmesh(dir.path(), &env, &["store", "check"]);
    assert!(!check.status.success());
    let stderr = text(&check.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Named absolute: the relative setting says nothing of which directory it was.
    let file = dir.path().canonicalize().unwrap().join("store.sqlite");
    assert!(
        stderr.starts_with(&format!(
            "error: store file corrupt: sqlite file {} ",
            file.display()
        )),
        "{stderr}"
    );
    // The file is left as it was, for the user to inspect.
    assert_eq!(
        std::fs::read(dir.path().join("store.sqlite")).unwrap(),
        [0x5a_u8; 8192]
    );
}

#[test]
fn a_bad_setting_stops_the_command_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[lease]\nrenew_interval_ms = 5000\n",
    )
    .unwrap();
    let init = shardmesh(dir.path(), &[], &["--config", "node.toml", "store", "init"]);
    assert!(!init.status.success());
    assert_eq!(
        text(&init.stderr),
        "error: invalid configuration: lease.duration_ms (default): 10000 is shorter than 3 \
         renew intervals (3 x lease.renew_interval_ms = 15000)\n"
    );
}
