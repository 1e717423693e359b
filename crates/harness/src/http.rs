//! The nodes' HTTP endpoints (`/health`, `/ready`, `/metrics`), read with a few lines of
//! HTTP/1.0 over a plain TCP stream: enough for a test, no client crate needed.

use std::collections::BTreeMap;
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
    let request = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect {addr}: {error}"))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|error| format!("write to {addr}: {error}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|error| format!("read from {addr}: {error}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| format!("GET http://{addr}{path} took over {REQUEST_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// Prometheus text exposition, each metric name summed over its label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// Parses the text format; comment lines and unparsable samples are skipped.
    pub fn parse(text: &str) -> Self {
        let mut sums = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, rest) = match line.find('{') {
                Some(open) => match line[open..].find('}') {
                    Some(close) => (&line[..open], &line[open + close + 1..]),
                    None => continue,
                },
                None => match line.split_once(' ') {
                    Some((name, rest)) => (name, rest),
                    None => continue,
                },
            };
            let Some(value) = rest
                .split_whitespace()
                .next()
                .and_then(|value| value.parse::<f64>().ok())
            else {
                continue;
            };
            *sums.entry(series.to_owned()).or_insert(0.0) += value;
        }
        Self(sums)
    }

    /// The value of `name` (the sum over its label sets), if it is exposed.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
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
    }
}
