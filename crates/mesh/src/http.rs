//! A node's HTTP face: `/health` (the process runs), `/ready` (the node does its share
//! of the work) and `/metrics` (Prometheus text), for orchestrators and dashboards.
//!
//! It is served from the first moment of start-up, before the store and the broker
//! answer, so an orchestrator sees a live process that is not ready yet, and why.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Whether the node is ready, and if not, why (shown in the 503 body).
pub type ReadyCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoints report once the node's parts exist.
pub struct Probes {
    /// Decides `/ready`.
    pub ready: ReadyCheck,
    /// Encoded at every `/metrics` scrape.
    pub registry: Registry,
}

/// What the endpoints answer from: the start-up step until the probes are set.
#[derive(Default)]
struct Face {
    probes: OnceLock<Probes>,
    // A std mutex: held only to copy a short string, never across an await.
    starting: Mutex<String>,
}

/// The running HTTP server of one node.
pub(crate) struct NodeHttp {
    face: Arc<Face>,
    address: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl NodeHttp {
    /// Binds `bind` (nothing when empty) and serves until [`NodeHttp::close`]. Prints
    /// `listening on http://ADDR` (how scripts and tests find a port picked with `:0`)
    /// on stdout, or on stderr when `stdout_is_data` (a sink writes events there).
    pub(crate) async fn serve(bind: &str, stdout_is_data: bool) -> Result<Self, Error> {
        let face = Arc::new(Face::default());
        let stop = CancellationToken::new();
        if bind.is_empty() {
            return Ok(Self {
                face,
                address: None,
                stop,
                task: None,
            });
        }
        let http_error = |source| Error::Http {
            bind: bind.to_owned(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(http_error)?;
        let address = listener.local_addr().map_err(http_error)?;
        let router = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&face));
        announce(address, stdout_is_data).map_err(http_error)?;
        tracing::info!(%address, "serving /health, /ready and /metrics");
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the HTTP server stopped");
            }
        });
        Ok(Self {
            face,
            address: Some(address),
            stop,
            task: Some(task),
        })
    }

    /// The bound address, if serving.
    pub(crate) fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// What `/ready` says while the node is starting.
    pub(crate) fn starting(&self, step: impl Into<String>) {
        *self
            .face
            .starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = step.into();
    }

    /// From now on `/ready` and `/metrics` answer from `probes`.
    pub(crate) fn set_probes(&self, probes: Probes) {
        if self.face.probes.set(probes).is_err() {
            tracing::warn!("node probes set twice; keeping the first");
        }
    }

    /// Stops serving and waits for the server to finish.
    pub(crate) async fn close(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn announce(address: SocketAddr, stdout_is_data: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let line = format!("listening on http://{address}\n");
    if stdout_is_data {
        std::io::stderr().write_all(line.as_bytes())
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(face): State<Arc<Face>>) -> Response {
    let verdict = match face.probes.get() {
        Some(probes) => (probes.ready)(),
        None => Err(format!(
            "starting: {}",
            face.starting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        )),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics(State(face): State<Arc<Face>>) -> Response {
    let empty = Registry::default();
    let registry = face.probes.get().map_or(&empty, |probes| &probes.registry);
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
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
