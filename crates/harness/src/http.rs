//! The nodes' HTTP endpoints (`/health`, `/ready`, `/metrics`, `POST /commands`), spoken
//! with a few lines of HTTP/1.0 over a plain TCP stream: enough for a test, no client
//! crate needed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

/// `GET path` on `addr` (HTTP/1.0, read to EOF).
///
/// # Errors
///
/// A description of what failed: connect, timeout, or an unreadable response.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    request(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        path,
    )
    .await
}

/// `POST path` on `addr` with a JSON `body`, bearing `token` if given.
///
/// # Errors
///
/// As [`get`].
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<Response, String> {
    let authorization = token.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {authorization}Content-Length: {}\r\n\r\n",
        body.len()
    );
    request(addr, &(head + body), path).await
}

async fn request(addr: SocketAddr, request: &str, path: &str) -> Result<Response, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect {addr}: {error}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("write to {addr}: {error}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|error| format!("read from {addr}: {error}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("http://{addr}{path} took over {REQUEST_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{path}: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{path}: no status in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// Prometheus text exposition: every sample, by metric name and label set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(Vec<Sample>);

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    /// The label set as written, without braces (`phase="active",shard="3"`).
    labels: String,
    value: f64,
}

impl Metrics {
    /// Parses the text format; comment lines and unparsable samples are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let (name, labels, rest) = if let Some(open) = line.find('{') {
                    let close = open + line[open..].find('}')?;
                    (&line[..open], &line[open + 1..close], &line[close + 1..])
                } else {
                    let (name, rest) = line.split_once(' ')?;
                    (name, "", rest)
                };
                let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
                Some(Sample {
                    name: name.to_owned(),
                    labels: labels.to_owned(),
                    value,
                })
            })
            .collect();
        Self(samples)
    }

    /// The value of `name` (the sum over its label sets), if it is exposed.
    pub fn get(&self, name: &str) -> Option<f64> {
        let mut matching = self
            .0
            .iter()
            .filter(|sample| sample.name == name)
            .peekable();
        matching.peek()?;
        Some(matching.map(|sample| sample.value).sum())
    }

    /// The sum of the samples of `name` whose label set contains `labels` (e.g.
    /// `phase="active"`); 0 when there are none.
    pub fn sum_where(&self, name: &str, labels: &str) -> f64 {
        self.0
            .iter()
            .filter(|sample| sample.name == name && sample.labels.contains(labels))
            .map(|sample| sample.value)
            .sum()
    }

    /// The value of `name`, 0 when it is not exposed (counters appear on first use).
    pub fn value(&self, name: &str) -> f64 {
        self.get(name).unwrap_or(0.0)
    }

    /// The value of a count-like metric (a counter, shards owned) as an integer; 0 when
    /// it is not exposed.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // counts: small, >= 0
    pub fn count(&self, name: &str) -> u64 {
        self.value(name).round().max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_over_labels_and_skip_comments() {
        let metrics = Metrics::parse(
            "# HELP a A.\n# TYPE a gauge\na{state=\"active\"} 3\na{state=\"resuming\"} 1\n\
             b_total 7\nc{x=\"1\"} 2.5 1700000000\n",
        );
        assert!((metrics.value("a") - 4.0).abs() < f64::EPSILON);
        assert!((metrics.value("b_total") - 7.0).abs() < f64::EPSILON);
        assert!((metrics.value("c") - 2.5).abs() < f64::EPSILON);
        assert_eq!(metrics.get("missing"), None);
        assert!((metrics.sum_where("a", "state=\"active\"") - 3.0).abs() < f64::EPSILON);
        assert!(metrics.sum_where("a", "state=\"gone\"").abs() < f64::EPSILON);
    }
}
