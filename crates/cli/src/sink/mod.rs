//! Built-in handlers for bots in any language: every delivered event as one JSON
//! object, written to stdout or sent in a POST to the bot's own HTTP endpoint.

mod event_json;
mod http;
mod stdout;

use std::time::Duration;

use anyhow::bail;
use shardmesh_consumer::{Delivery, Handler};

pub use event_json::event_json;
pub use http::HttpSink;
pub use stdout::StdoutSink;

/// Where `shardmesh consumer` hands events: chosen by `--sink`.
#[derive(Debug)]
pub enum Sink {
    /// `--sink stdout`: one JSON object per line.
    Stdout(StdoutSink),
    /// `--sink http://...` or `https://...`: one POST per event.
    Http(Box<HttpSink>),
}

impl Sink {
    /// Parses `--sink`; `timeout` bounds each HTTP request.
    pub fn parse(spec: &str, timeout: Duration) -> anyhow::Result<Self> {
        if spec == "stdout" {
            return Ok(Self::Stdout(StdoutSink::default()));
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            return Ok(Self::Http(Box::new(HttpSink::new(spec, timeout)?)));
        }
        bail!("--sink {spec:?}: expected `stdout` or an http:// or https:// URL")
    }

    /// Whether the sink writes to stdout (which then carries nothing else).
    pub fn uses_stdout(&self) -> bool {
        matches!(self, Self::Stdout(_))
    }
}

impl Handler for Sink {
    type Error = anyhow::Error;

    async fn handle(&self, delivery: Delivery) -> Result<(), Self::Error> {
        let json = event_json(&delivery)?;
        match self {
            Self::Stdout(sink) => sink.write(json).await,
            Self::Http(sink) => sink.post(json).await,
        }
    }
}
