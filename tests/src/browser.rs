//! A real headless browser for the scenarios that test a page: Debian's `chromium`
//! started with `--headless` and a throwaway profile, driven over Chrome's remote
//! debugging protocol (CDP: JSON over a WebSocket): evaluate JavaScript in the page and read the
//! result by value, take a PNG screenshot. Chromium and every process it started are
//! killed when the [`Browser`] is dropped.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use shardmesh_harness::{eventually, file_tail};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long chromium may take to open its CDP port and show the page.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CDP command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The window the page is laid out in (and the screenshot's width).
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// A running headless chromium showing one page, and the CDP connection to it.
pub struct Browser {
    chromium: Chromium,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// The chromium process; killed with everything it started when dropped, also when
/// the start fails half-way.
struct Chromium {
    child: Child,
    /// Its stderr, for the failure messages.
    log: PathBuf,
    /// The profile (`--user-data-dir`); deleted after chromium is killed.
    profile: Option<TempDir>,
}

impl Browser {
    /// Starts `chromium` headless on `url` (`$SHARDMESH_CHROMIUM` names another binary)
    /// and connects to the page over CDP.
    ///
    /// # Panics
    ///
    /// When chromium is not installed, saying how to install it, or does not start.
    pub async fn open(url: &str) -> Self {
        let profile = tempfile::Builder::new()
            .prefix("shardmesh-chromium-")
            .tempdir()
            .expect("a temp dir for chromium's profile");
        let log = profile.path().join("chromium.log");
        let stderr = std::fs::File::create(&log).expect("create chromium's log");
        let binary = std::env::var("SHARDMESH_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                "--remote-debugging-port=0",
                &format!("--window-size={WIDTH},{HEIGHT}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            // Its scratch files in the profile too, so nothing outlives the Browser.
            .env("TMPDIR", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group, so that Drop kills the renderers and helpers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{binary}` ({error}): the dashboard test drives a real headless \
                     browser, Debian's chromium. Install it (`sudo apt-get install -y chromium`; \
                     scripts/test installs it when run as root) or set SHARDMESH_CHROMIUM to a \
                     Chromium or Chrome binary"
                )
            });
        let mut chromium = Chromium {
            child,
            log,
            profile: Some(profile),
        };
        let port = chromium.devtools_port().await;
        let page = page_target(port, url).await;
        let (socket, _) = tokio_tungstenite::connect_async(page.as_str())
            .await
            .unwrap_or_else(|error| panic!("DevTools WebSocket {page}: {error}"));
        Self {
            chromium,
            socket,
            next_id: 0,
        }
    }

    /// Evaluates `expression` in the page and returns its value (awaited when it is a
    /// promise), as JSON.
    ///
    /// # Errors
    ///
    /// A JavaScript exception or a failed CDP call, as text.
    pub async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("`{expression}` threw: {exception}"));
        }
        Ok(result["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Saves a PNG of the whole page (not only the window) to `path`.
    ///
    /// # Errors
    ///
    /// A failed CDP call or file write, as text.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let height = self
            .evaluate("document.documentElement.scrollHeight")
            .await?
            .as_u64()
            .unwrap_or(u64::from(HEIGHT))
            .max(u64::from(HEIGHT));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        self.call("Emulation.clearDeviceMetricsOverride", json!({}))
            .await?;
        let data = shot?["data"]
            .as_str()
            .ok_or("captureScreenshot returned no data")?
            .to_owned();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| format!("the screenshot is not base64: {error}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|error| format!("create {}: {error}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|error| format!("write {}: {error}", path.display()))
    }

    /// The end of chromium's stderr.
    pub fn log_tail(&self) -> String {
        file_tail(&self.chromium.log, 20)
    }

    /// Sends one CDP command and waits for its answer, skipping the events that
    /// arrive in between.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        let exchange = async {
            self.socket
                .send(Message::text(request))
                .await
                .map_err(|error| format!("send {method}: {error}"))?;
            loop {
                let message = self
                    .socket
                    .next()
                    .await
                    .ok_or_else(|| format!("DevTools closed the connection during {method}"))?
                    .map_err(|error| format!("read the answer to {method}: {error}"))?;
                let Message::Text(text) = message else {
                    continue;
                };
                let answer: Value = serde_json::from_str(&text)
                    .map_err(|error| format!("DevTools sent no JSON ({error}): {text}"))?;
                if answer["id"].as_u64() != Some(id) {
                    continue;
                }
                if let Some(error) = answer.get("error") {
                    return Err(format!("{method} failed: {error}"));
                }
                return Ok(answer["result"].clone());
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{method}: no answer from DevTools within {CALL_TIMEOUT:?}"))?
    }
}

impl Chromium {
    /// The port chromium picked, from the `DevToolsActivePort` file it writes into its
    /// profile once it listens.
    async fn devtools_port(&mut self) -> u16 {
        let file = self
            .profile
            .as_ref()
            .expect("the profile lives until drop")
            .path()
            .join("DevToolsActivePort");
        let log = self.log.clone();
        let child = &mut self.child;
        eventually(
            "chromium writing DevToolsActivePort",
            START_TIMEOUT,
            async || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "chromium exited ({status}) before opening DevTools:\n{}",
                        file_tail(&log, 30)
                    );
                }
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                text.lines()
                    .next()
                    .and_then(|port| port.trim().parse().ok())
                    .ok_or_else(|| format!("no port yet; chromium says:\n{}", file_tail(&log, 10)))
            },
        )
        .await
    }
}

/// The CDP WebSocket URL of the tab showing `url`, from `GET /json/list`.
async fn page_target(port: u16, url: &str) -> String {
    eventually(
        &format!("a DevTools page target showing {url}"),
        START_TIMEOUT,
        async || {
            let list = devtools_list(port).await?;
            list.as_array()
                .into_iter()
                .flatten()
                .find(|target| {
                    target["type"] == "page"
                        && target["url"].as_str().is_some_and(|at| at.starts_with(url))
                })
                .and_then(|target| target["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("targets: {list}"))
        },
    )
    .await
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group (the browser process, its zygotes, renderers and helpers),
        // which `process_group(0)` made with the browser's pid as its id. The group is
        // given after `--` with `-s`: procps-ng 4.0.2's `kill -KILL -<pgid>` misreads
        // the group id (it sent `-13999` as -1, which is every process on the host).
        let group = self.child.id();
        if group > 1 {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- chromium's stderr -----\n{}",
                file_tail(&self.log, 20)
            );
        }
        drop(self.profile.take());
    }
}

/// `GET /json/list` on CDP's HTTP port. Chromium answers HTTP/1.1 only (an
/// HTTP/1.0 request gets nothing) and keeps the connection open, so the body is read
/// to its Content-Length; the Host header carries the port, which chromium copies into
/// the WebSocket URLs it lists.
async fn devtools_list(port: u16) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("connect to DevTools on {port}: {error}"))?;
    let request =
        format!("GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("ask DevTools for its targets: {error}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        let read = tokio::time::timeout(CALL_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| format!("DevTools sent no target list within {CALL_TIMEOUT:?}"))?
            .map_err(|error| format!("read DevTools' targets: {error}"))?;
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= length {
                return serde_json::from_str(&body[..length])
                    .map_err(|error| format!("DevTools' targets are not JSON ({error}): {body}"));
            }
        }
    }
    Err(format!(
        "DevTools closed before its target list: {}",
        String::from_utf8_lossy(&raw)
    ))
}
