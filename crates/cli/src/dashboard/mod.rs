//! `shardmesh dashboard`: one live page of the cluster for people who would rather look
//! than read, served by its own process.
//!
//! Why its own process and not a page served by a node: in a mesh any node can go at
//! any moment, and the moments a person most needs the page are the ones when nodes die.
//! A page served by a node would vanish with it. The dashboard holds no lease and takes
//! no work; like `ctl status` it reads the store (the source of truth, which answers
//! with every node down), and it asks the live nodes over the control exchange for what
//! only they know (connection phase, heartbeat latency, last event). Several dashboards
//! can run at once, anywhere the store and the broker can be reached.
//!
//! Routes:
//! - `GET /`: the page (HTML, CSS and vanilla JS in one file, no build chain), which
//!   polls `GET /api/state` every second and redraws without a reload.
//! - `GET /api/state`: the JSON of [`state::DashboardState`], read from the store per
//!   request (shared by requests within [`STATE_MAX_AGE`]); 503 with `{"error": ...}`
//!   when the store cannot be read, which the page shows in a banner.
//! - `GET /health`: `ok` while the process runs.
//! - `POST /api/actions/drain`, `POST /api/actions/restart-shard`: control actions,
//!   only with `--admin-token-file` (see [`actions`]).

mod actions;
mod auth;
mod live;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shardmesh_mesh::MeshSettings;
use shardmesh_store::AnyStore;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::status_report::Snapshot;
use auth::AdminToken;
use state::{DashboardState, Live};

/// The page, served as is.
const PAGE: &str = include_str!("page.html");
/// How long one read of the store may serve requests: several open pages (or a page
/// and a test) polling every second cost one read, and a change still shows within
/// a second and a half.
pub const STATE_MAX_AGE: Duration = Duration::from_millis(500);
/// How long the store may take to answer before the page says it does not.
const STORE_DEADLINE: Duration = Duration::from_secs(5);
/// How many recent actions the page lists.
const ACTIONS_SHOWN: usize = 50;

/// Flags of `shardmesh dashboard`. The store, broker and cluster come from `--config`
/// and the environment, as for `ctl`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Address to serve the page on (port 0 picks a free one; the address is printed
    /// as `listening on http://ADDR`). Keep it on localhost or behind a proxy that
    /// authenticates: the page shows node addresses and the action log.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7200")]
    bind: String,
    /// File holding the admin token that enables the control actions (drain a node,
    /// restart a shard), given by the page as `Authorization: Bearer <token>`. Without
    /// it (or `SHARDMESH_DASHBOARD_TOKEN`) the dashboard is read-only. The token is never
    /// logged.
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
}

/// A state read (or why it could not be) and when.
type Cached = (Instant, Result<Arc<DashboardState>, String>);

/// What the handlers share.
struct App {
    settings: MeshSettings,
    /// Opened at the first request that needs it, and again after a failed open (a
    /// ScyllaDB that was down at start), so the dashboard starts whatever the store does.
    store: OnceCell<AnyStore>,
    /// The last state served and when it was read; a tokio mutex so that requests
    /// arriving together wait for one read instead of making one each.
    cache: tokio::sync::Mutex<Option<Cached>>,
    /// What the nodes said when last asked and the groups' lag, written by
    /// [`live::ask_nodes`] and [`live::measure_lag`].
    live: Mutex<Live>,
    token: Option<AdminToken>,
    /// How the action log names whoever asks through this dashboard.
    actor: String,
}

/// Serves the dashboard on `args.bind` until SIGTERM or Ctrl-C.
pub async fn run(args: DashboardArgs, settings: MeshSettings) -> anyhow::Result<()> {
    let token = AdminToken::load(args.admin_token_file.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("--bind {}", args.bind))?;
    let address = listener.local_addr()?;
    let app = Arc::new(App::new(settings, token));
    let asking = tokio::spawn(live::ask_nodes(Arc::clone(&app)));
    let measuring = tokio::spawn(live::measure_lag(Arc::clone(&app)));
    announce(address)?;
    tracing::info!(
        %address,
        cluster = %app.settings.cluster.name,
        actions = if app.token.is_some() { "enabled" } else { "disabled (read-only)" },
        "serving the dashboard"
    );
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(stop_signal())
        .await;
    asking.abort();
    measuring.abort();
    served.context("serving the dashboard")
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/api/state", get(current_state))
        .route("/api/actions/drain", post(actions::drain))
        .route("/api/actions/restart-shard", post(actions::restart_shard))
        .with_state(app)
}

/// `listening on http://ADDR` on stdout, as the nodes say it: how scripts and tests
/// find a port picked with `:0`.
fn announce(address: SocketAddr) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn health() -> &'static str {
    "ok\n"
}

async fn current_state(State(app): State<Arc<App>>) -> Response {
    match app.state().await {
        Ok(state) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(state.as_ref().clone()),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({
                "error": error,
                "actions_enabled": app.token.is_some(),
            })),
        )
            .into_response(),
    }
}

impl App {
    fn new(settings: MeshSettings, token: Option<AdminToken>) -> Self {
        Self {
            settings,
            store: OnceCell::new(),
            cache: tokio::sync::Mutex::new(None),
            live: Mutex::new(Live::default()),
            actor: format!("dashboard@{}", crate::ops::host_name()),
            token,
        }
    }

    /// The state as of at most [`STATE_MAX_AGE`] ago, or why the store could not be
    /// read.
    async fn state(&self) -> Result<Arc<DashboardState>, String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, state)) = cache.as_ref()
            && at.elapsed() <= STATE_MAX_AGE
        {
            return state.clone();
        }
        let state = self.read_state().await.map(Arc::new);
        *cache = Some((Instant::now(), state.clone()));
        state
    }

    async fn read_state(&self) -> Result<DashboardState, String> {
        let read = async {
            let store = self.store().await?;
            Snapshot::read(store, ACTIONS_SHOWN)
                .await
                .map_err(|error| format!("reading {}: {error}", store_location(store)))
        };
        let snapshot = tokio::time::timeout(STORE_DEADLINE, read)
            .await
            .map_err(|_| {
                format!(
                    "the store did not answer within {}s",
                    STORE_DEADLINE.as_secs()
                )
            })??;
        let live = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(state::build(
            &snapshot,
            &live,
            SystemTime::now(),
            self.token.is_some(),
        ))
    }

    /// The store, opened now if it is not yet.
    async fn store(&self) -> Result<&AnyStore, String> {
        self.store
            .get_or_try_init(|| async {
                shardmesh_store::open(&self.settings.store, &self.settings.cluster.name)
                    .await
                    .map_err(|error| format!("opening the store: {error}"))
            })
            .await
    }
}

fn store_location(store: &AnyStore) -> String {
    use shardmesh_store::Store as _;
    store.location()
}

/// A JSON error body, `{"error": message}`, with `status`.
fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use shardmesh_harness::{get, post_json};

    use super::*;

    /// Serves a dashboard on a free port with `settings`, read-only.
    async fn serve(settings: MeshSettings) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("the bound address");
        let app = Arc::new(App::new(settings, None));
        tokio::spawn(async move { axum::serve(listener, router(app)).await });
        address
    }

    fn sqlite_at(path: PathBuf) -> MeshSettings {
        let mut settings = MeshSettings::default();
        settings.cluster.name = "dash".into();
        settings.store.sqlite.path = path;
        settings
    }

    #[tokio::test]
    async fn the_page_the_state_and_health_are_served_from_a_fresh_store() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let address = serve(sqlite_at(dir.path().join("store.sqlite"))).await;
        let page = get(address, "/").await.expect("GET /");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("/api/state"), "the page polls the state");
        let state = get(address, "/api/state").await.expect("GET /api/state");
        assert_eq!(state.status, 200, "{state:?}");
        let json: serde_json::Value = serde_json::from_str(&state.body).expect("JSON");
        assert_eq!(json["cluster"], "dash");
        assert_eq!(json["actions_enabled"], false);
        assert_eq!(json["shards"], serde_json::json!([]));
        assert_eq!(
            get(address, "/health").await.expect("GET /health").body,
            "ok\n"
        );
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_opened_is_a_503_naming_why() {
        let address = serve(sqlite_at("/proc/no-such-dir/store.sqlite".into())).await;
        let state = get(address, "/api/state").await.expect("GET /api/state");
        assert_eq!(state.status, 503, "{state:?}");
        let json: serde_json::Value = serde_json::from_str(&state.body).expect("JSON");
        let error = json["error"].as_str().expect("an error text");
        assert!(error.contains("opening the store"), "{error}");
        assert!(error.contains("/proc/no-such-dir"), "{error}");
        // Actions are refused before the store is needed.
        let refused = post_json(address, "/api/actions/drain", r#"{"node": "g1"}"#, None)
            .await
            .expect("POST");
        assert_eq!(refused.status, 403);
        assert!(refused.body.contains(auth::DISABLED), "{refused:?}");
    }
}
