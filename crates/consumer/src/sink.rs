//! Built-in handlers for bots in any language (what `shardmesh consumer --sink` runs):
//! every delivered event as one JSON object, written to stdout or sent in a POST to
//! the bot's own HTTP endpoint.

mod event_json;
mod http;
mod stdout;

use std::time::Duration;

use crate::{Delivery, Handler};
use anyhow::bail;

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
    /// Parses `stdout` or an `http://`/`https://` URL; `timeout` bounds each HTTP
    /// request.
    ///
    /// # Errors
    ///
    /// Anything else, or a URL that does not parse.
    pub fn parse(spec: &str, timeout: Duration) -> anyhow::Result<Self> {
        if spec == "stdout" {
            return Ok(Self::Stdout(StdoutSink::default()));
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            return Ok(Self::Http(Box::new(HttpSink::new(spec, timeout)?)));
        }
        bail!("sink {spec:?}: expected `stdout` or an http:// or https:// URL")
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

    fn writes_stdout(&self) -> bool {
        matches!(self, Self::Stdout(_))
    }
}
