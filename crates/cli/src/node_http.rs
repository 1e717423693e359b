//! A node's HTTP face: `/health` (the process runs), `/ready` (the node does its share
//! of the work) and `/metrics` (Prometheus text), for orchestrators and dashboards.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Whether the node is ready, and if not, why (shown in the 503 body).
pub type ReadyCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoints report.
pub struct Probes {
    /// Decides `/ready`.
    pub ready: ReadyCheck,
    /// Encoded at every `/metrics` scrape.
    pub registry: Registry,
}

/// Binds `bind`, prints `listening on http://ADDR` (how scripts and tests find a port
/// picked with `:0`) on stdout, or on stderr when stdout carries events, and serves
/// until `shutdown`.
pub async fn serve(
    bind: &str,
    announce_on_stdout: bool,
    probes: Probes,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding node.http_bind {bind}"))?;
    let address = listener.local_addr()?;
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(probes));
    {
        use std::io::Write as _;
        let line = format!("listening on http://{address}\n");
        if announce_on_stdout {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(line.as_bytes())?;
            stdout.flush()?;
        } else {
            std::io::stderr().write_all(line.as_bytes())?;
        }
    }
    tracing::info!(%address, "serving /health, /ready and /metrics");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the HTTP server stopped");
        }
    });
    Ok((address, task))
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(probes): State<Arc<Probes>>) -> Response {
    match (probes.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &probes.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {error}\n"),
        )
            .into_response(),
    }
}
