//! The Python bot of `examples/python/receiver.py` as a real process: `python3` serving
//! the HTTP sink's POSTs on a port of its choosing, its log of handled events (one JSON
//! line each) read back as [`Post`]s, and the duplicate deliveries it answered without
//! handling them again counted from its stderr. Killed with its handle; when a scenario
//! panics, the end of its stderr is printed.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};

use shardmesh_harness::{file_tail, listening_addr};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::sink::{EventSink, Post, SinkEvent};

/// The receiver's source, from this crate's directory.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/python/receiver.py"
);
/// What the receiver's stderr says for each repeated delivery id it did not handle.
const DUPLICATE_LINE: &str = "duplicate delivery ";
/// How [`Post::node`] names the consumer node behind a line: the log does not say.
const UNKNOWN_NODE: &str = "(receiver log)";

/// A running `python3 examples/python/receiver.py --port 0 --log <file>`.
pub struct PythonReceiver {
    child: Child,
    addr: SocketAddr,
    group: String,
    events: PathBuf,
    stderr: PathBuf,
    read: Mutex<LogReader>,
}

/// How far the events log has been read, and what it held.
#[derive(Default)]
struct LogReader {
    offset: u64,
    /// The start of a line still being written.
    partial: String,
    posts: Vec<Post>,
}

impl PythonReceiver {
    /// Starts the receiver with its files in `dir` (`receiver.jsonl`, the handled
    /// events; `receiver.log`, its stderr) and waits for its `listening on` line.
    /// `group` is the consumer group whose nodes post to it (every [`Post`] is of it).
    ///
    /// # Panics
    ///
    /// When `python3` is not installed (saying so), or the receiver does not start.
    pub async fn start(dir: &Path, group: &str) -> Self {
        let events = dir.join("receiver.jsonl");
        let stderr = dir.join("receiver.log");
        let log = std::fs::File::create(&stderr).expect("create the receiver's log");
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(["--bind", "127.0.0.1", "--port", "0", "--log"])
            .arg(&events)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run python3 ({error}): the Python receiver's test needs python3 \
                     on PATH (`apt-get install -y python3`; .ci/run installs it)"
                )
            });
        let addr = listening_addr(&mut child, "the Python receiver", &stderr)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            child,
            addr,
            group: group.to_owned(),
            events,
            stderr,
            read: Mutex::new(LogReader::default()),
        }
    }

    /// How many deliveries it answered 200 without handling them, because it had
    /// handled their delivery id before.
    pub fn duplicates(&self) -> usize {
        self.stderr_text()
            .lines()
            .filter(|line| line.contains(DUPLICATE_LINE))
            .count()
    }

    /// Its stderr lines at level ERROR (a failed handler) or with a Python traceback.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr_text()
            .lines()
            .filter(|line| line.contains(" ERROR ") || line.starts_with("Traceback"))
            .map(str::to_owned)
            .collect()
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl EventSink for PythonReceiver {
    /// The receiver takes POSTs on any path; the test's use `/events/<group>/<node>`.
    fn url(&self, group: &str, node: &str) -> String {
        format!("http://{}/events/{group}/{node}", self.addr)
    }

    /// The events it handled from line `from` of its log on, each as a POST answered
    /// 200 by `group`, `at` the moment the test read the line.
    ///
    /// # Panics
    ///
    /// When the log cannot be read or holds a line that is not an event.
    fn posts_since(&self, from: usize) -> Vec<Post> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = match std::fs::File::open(&self.events) {
            Ok(file) => file,
            // Not created before the first event.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => panic!("read {}: {error}", self.events.display()),
        };
        let mut text = String::new();
        file.seek(SeekFrom::Start(read.offset))
            .and_then(|_| file.read_to_string(&mut text))
            .unwrap_or_else(|error| panic!("read {}: {error}", self.events.display()));
        read.offset += text.len() as u64;
        read.partial.push_str(&text);
        let complete = match read.partial.rfind('\n') {
            Some(end) => read.partial.drain(..=end).collect::<String>(),
            None => String::new(),
        };
        let now = Instant::now();
        for line in complete.lines() {
            let event = SinkEvent::parse(line.as_bytes()).unwrap_or_else(|reason| {
                panic!("the receiver logged a line that is not an event ({reason}): {line}")
            });
            let index = read.posts.len();
            read.posts.push(Post {
                index,
                at: now,
                group: self.group.clone(),
                node: UNKNOWN_NODE.to_owned(),
                status: 200,
                event,
            });
        }
        read.posts
            .get(from..)
            .map(<[Post]>::to_vec)
            .unwrap_or_default()
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        // The process dies with its handle (kill_on_drop).
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "\n===== the end of the Python receiver's stderr ({}) =====\n{}",
                self.stderr.display(),
                file_tail(&self.stderr, 40)
            );
        }
    }
}
