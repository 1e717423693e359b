//! `POST /commands` on a consumer node: gateway commands over HTTP for bots in any
//! language. JSON in ([`CommandRequest`]), the command's id and shard out once the
//! broker has accepted it.
//!
//! | status | body | when |
//! |---|---|---|
//! | 202 | `{"id": "…", "shard": 3}` | accepted: it reaches Discord once |
//! | 200 | `{"id", "shard", "status": "sent", "node", "at_ms", "reason"}` | with `?wait_ms=N`: the outcome (`sent`, `expired` or `rejected`) came within N ms (at most 60,000); without it in time, 202 as above |
//! | 400 | `{"error": "…", "field": "op"}` | not a command that may be sent, or `wait_ms` not a number (nothing sent) |
//! | 401 | `{"error": "…"}` | a token is configured and the request does not bear it |
//! | 503 | `{"error": "…"}` | no cluster spec yet, or the broker does not take it |
//! | 504 | `{"error": "…"}` | the broker did not confirm in time (sending the same `id` again is safe) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use shardmesh_broker::BrokerConfig;
use shardmesh_store::{AnyStore, Store as _};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::{CommandError, CommandRequest, Commands};
use crate::config::ApiToken;

/// What the endpoint needs to address and send commands.
pub(crate) struct ApiSetup {
    pub broker: BrokerConfig,
    pub cluster: String,
    pub node: String,
    pub store: Arc<AnyStore>,
    pub token: ApiToken,
}

struct ApiState {
    setup: ApiSetup,
    // Connected at the first request: the shard count comes from the cluster spec,
    // which the first gateway node records.
    commands: OnceCell<Commands>,
    links: CancellationToken,
}

/// The running command API.
pub(crate) struct CommandApi {
    address: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl CommandApi {
    /// Binds `bind` and serves until [`CommandApi::close`].
    pub(crate) async fn serve(
        bind: &str,
        setup: ApiSetup,
        links: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(ApiState {
            setup,
            commands: OnceCell::new(),
            links,
        });
        let router = Router::new()
            .route("/commands", post(post_command))
            .with_state(state);
        tracing::info!(%address, "serving POST /commands");
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the command API stopped");
            }
        });
        Ok(Self {
            address,
            stop,
            task,
        })
    }

    /// The bound address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving.
    pub(crate) async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// `?wait_ms=N`: wait up to N ms for the outcome.
#[derive(Debug, Default, serde::Deserialize)]
struct Wait {
    wait_ms: Option<u64>,
}

/// Longest `wait_ms` a caller may ask for.
const MAX_WAIT_MS: u64 = 60_000;

async fn post_command(
    State(state): State<Arc<ApiState>>,
    wait: Result<Query<Wait>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Query(wait)) = wait else {
        return error(
            StatusCode::BAD_REQUEST,
            "must be a whole number of milliseconds",
            Some("wait_ms"),
        );
    };
    if !state.setup.token.is_empty() {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if !offered.is_some_and(|token| state.setup.token.matches(token)) {
            return error(StatusCode::UNAUTHORIZED, "a bearer token is required", None);
        }
    }
    let request: CommandRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a command: {problem}"),
                None,
            );
        }
    };
    let commands = match state.commands().await {
        Ok(commands) => commands,
        Err(response) => return response,
    };
    let submitted = match wait.wait_ms {
        Some(ms) => {
            let wait = Duration::from_millis(ms.min(MAX_WAIT_MS));
            commands.submit_and_wait(request, wait).await
        }
        None => commands
            .submit(request)
            .await
            .map(|accepted| (accepted, None)),
    };
    match submitted {
        Ok((accepted, None)) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": accepted.id, "shard": accepted.shard }),
        ),
        Ok((accepted, Some(outcome))) => json(
            StatusCode::OK,
            &serde_json::json!({
                "id": accepted.id,
                "shard": accepted.shard,
                "status": outcome.status,
                "node": outcome.node,
                "at_ms": outcome.at_ms,
                "reason": outcome.reason,
            }),
        ),
        Err(CommandError::Invalid(invalid)) => error(
            StatusCode::BAD_REQUEST,
            &invalid.to_string(),
            Some(invalid.field),
        ),
        Err(timeout @ CommandError::Timeout(_)) => {
            error(StatusCode::GATEWAY_TIMEOUT, &timeout.to_string(), None)
        }
        Err(other) => error(StatusCode::SERVICE_UNAVAILABLE, &other.to_string(), None),
    }
}

impl ApiState {
    async fn commands(&self) -> Result<&Commands, Response> {
        self.commands
            .get_or_try_init(|| async {
                let unavailable =
                    |text: String| error(StatusCode::SERVICE_UNAVAILABLE, &text, None);
                let spec = self
                    .setup
                    .store
                    .spec()
                    .await
                    .map_err(|problem| {
                        unavailable(format!("cannot read the cluster spec: {problem}"))
                    })?
                    .ok_or_else(|| {
                        unavailable(
                            "no cluster spec recorded yet: no gateway node has started".into(),
                        )
                    })?;
                Commands::connect(
                    &self.setup.broker,
                    &self.setup.cluster,
                    spec.shard_count,
                    self.setup.node.clone(),
                    self.links.clone(),
                )
                .await
                .map_err(|problem| unavailable(problem.to_string()))
            })
            .await
    }
}

fn error(status: StatusCode, text: &str, field: Option<&str>) -> Response {
    let body = match field {
        Some(field) => serde_json::json!({ "error": text, "field": field }),
        None => serde_json::json!({ "error": text }),
    };
    json(status, &body)
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
