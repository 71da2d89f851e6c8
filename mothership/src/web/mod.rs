//! `mothership serve`: the operator's web surface, one long-running axum
//! server beside the tick loop. It reads Postgres (never writes it except
//! through `crate::channels`, as the CLI does) and points browsers at media.
//!
//! - Pages (server-rendered with maud, which escapes every string it is
//!   given) and the same data as JSON under `/api/v1`.
//! - `/metrics` for Prometheus, computed from Postgres at scrape time and
//!   cached briefly; `/healthz` (the process answers) and `/readyz` (Postgres
//!   answers with this binary's schema).
//! - Media: a recording's playlist rendered from its ledger, whose segment
//!   URIs are presigned S3 URLs (the media never passes through this server)
//!   or, for a file store, this server's `/media/recordings/{id}/objects/…`.
//!
//! Access (`access`): loopback by default. Any other address needs
//! `COLONY_WEB_TOKEN`, sent as `Authorization: Bearer …`, or a session
//! cookie from `/login`. Requests for host names that are not this server's
//! are refused (DNS rebinding), every POST carries the CSRF token the pages
//! embed and, from a browser, this site's `Origin`; every answer carries a
//! CSP and the other security headers.

pub mod access;
mod actions;
mod api;
mod assets;
mod data;
mod media;
pub mod metrics;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use colony::config::DatabaseArgs;
use colony::exit::Exit;
use colony::storage::{ObjectStore, StorageArgs};
use sqlx::PgPool;

pub use access::check_exposure;

use crate::platform_api::PlatformArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten, next_help_heading = "Platforms")]
    pub platforms: PlatformArgs,
    /// Address to listen on. Anything but a loopback address needs --token.
    #[arg(long, env = "COLONY_WEB_BIND", default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    /// The token every request must carry (Authorization: Bearer TOKEN, or
    /// sign in at /login), at least 32 characters (`openssl rand -hex 32`).
    /// /healthz and /readyz answer without it.
    #[arg(long, env = "COLONY_WEB_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Host names the dashboard answers for besides loopback names and IP
    /// addresses, comma-separated (e.g. colony.example.com, or web in
    /// compose). A request for any other name is refused: a web page could
    /// otherwise point its own name at this server (DNS rebinding).
    #[arg(long, env = "COLONY_WEB_HOSTS", value_delimiter = ',', value_name = "HOSTS")]
    pub hosts: Vec<String>,
    /// How long a browser stays signed in.
    #[arg(long, env = "COLONY_WEB_SESSION", default_value = "12h", value_name = "DURATION")]
    pub session: colony::config::NonZeroDuration,
    /// The Postgres URL the dashboard connects with: a login in the
    /// colony_web role (`mothership db roles`). Default: --database-url.
    #[arg(long, env = "COLONY_WEB_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub web_database_url: Option<colony::config::DatabaseUrl>,
    /// Event streams (live job progress) open at once; more are turned away.
    #[arg(long, env = "COLONY_WEB_MAX_STREAMS", default_value_t = 32, value_name = "N")]
    pub max_streams: usize,
    /// How long a computed /metrics page is reused.
    #[arg(long, env = "COLONY_METRICS_CACHE", default_value = "5s", value_name = "DURATION")]
    pub metrics_cache: humantime::Duration,
    /// How long a presigned media URL handed to a browser stays valid (S3).
    #[arg(long, env = "COLONY_MEDIA_URL_TTL", default_value = "6h", value_name = "DURATION")]
    pub media_url_ttl: humantime::Duration,
    /// The S3 endpoint as browsers reach it, when it differs from
    /// --s3-endpoint (e.g. compose's http://garage:3900 is published as
    /// https://media.example.com). Presigned media URLs are signed for it.
    #[arg(long, env = "COLONY_MEDIA_ENDPOINT", value_name = "URL")]
    pub media_endpoint: Option<url::Url>,
}

/// What every handler gets.
#[derive(Clone)]
pub struct Web {
    pub pool: PgPool,
    pub store: Arc<dyn ObjectStore>,
    /// Signs the media URLs browsers get: the store itself, or the same
    /// bucket at its public endpoint (--media-endpoint).
    pub presigner: Arc<dyn ObjectStore>,
    pub platforms: PlatformArgs,
    access: Arc<access::Access>,
    csrf: Arc<str>,
    /// The Content-Security-Policy every answer carries.
    csp: Arc<str>,
    pub metrics: Arc<metrics::Cache>,
    pub media_url_ttl: Duration,
    /// Running jobs' progress, read once a second for every open stream.
    pub jobs: Arc<api::JobFeed>,
}

impl Web {
    pub async fn new(
        pool: PgPool,
        store: Arc<dyn ObjectStore>,
        presigner: Arc<dyn ObjectStore>,
        args: &ServeArgs,
    ) -> Self {
        let csrf: [u8; 24] = rand::random();
        // Where presigned media URLs point: the CSP lets media come from there.
        let probe = colony::storage::ObjectKey::parse("colony-csp-probe").expect("a valid key");
        let media_origin = presigner
            .presign_get(&probe, Duration::from_secs(60))
            .await
            .ok()
            .flatten()
            .and_then(|u| url::Url::parse(&u).ok())
            .map(|u| u.origin().ascii_serialization());
        Self {
            jobs: api::JobFeed::start(pool.clone(), args.max_streams),
            pool,
            store,
            presigner,
            platforms: args.platforms.clone(),
            access: Arc::new(access::Access::new(args.token.as_deref(), &args.hosts, args.session.get())),
            csrf: Arc::from(hex::encode(csrf)),
            csp: Arc::from(access::content_security_policy(media_origin.as_deref())),
            metrics: Arc::new(metrics::Cache::new(args.metrics_cache.into())),
            media_url_ttl: args.media_url_ttl.into(),
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A refusal or failure, as the status code and one line.
#[derive(Debug)]
pub enum WebError {
    NotFound(String),
    BadRequest(String),
    Forbidden(&'static str),
    /// Too much at once: try again shortly.
    Busy(&'static str),
    Internal(anyhow::Error),
}

impl WebError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        WebError::Internal(e.into())
    }
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::internal(e)
    }
}

impl From<crate::admin::AdminError> for WebError {
    fn from(e: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError;
        match e {
            AdminError::Invalid(m) => WebError::BadRequest(m),
            AdminError::NoChannel(_) => WebError::NotFound(e.to_string()),
            other => WebError::internal(other),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            WebError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            WebError::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_owned()),
            WebError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, m.to_owned()),
            WebError::Internal(e) => {
                tracing::warn!(error = %format!("{e:#}"), "a web request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the server's log says why".to_owned())
            }
        };
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// Check the exposure, connect, and take the port: everything that can fail
/// on bad configuration, before anything is served.
pub async fn bind(args: &ServeArgs) -> anyhow::Result<(tokio::net::TcpListener, Web)> {
    check_exposure(args.bind, args.token.as_deref())?;
    let mut db = args.db.clone();
    if let Some(url) = &args.web_database_url {
        db.database_url = url.clone();
    }
    let pool = colony::db::connect(&db).await?;
    let store = colony::storage::open(&args.storage).await.context("opening object storage")?;
    let presigner: Arc<dyn ObjectStore> = match (&args.media_endpoint, args.storage.s3_settings()) {
        (None, _) => store.clone(),
        (Some(endpoint), Some(settings)) if matches!(endpoint.scheme(), "http" | "https") => Arc::new(
            colony::storage::S3Store::open(settings)
                .await
                .context("opening object storage")?
                .presigning_for(endpoint.as_str().trim_end_matches('/')),
        ),
        (Some(endpoint), Some(_)) => {
            return Err(Exit::config(format!("--media-endpoint {endpoint} is not an http(s) URL")).into());
        }
        (Some(_), None) => {
            return Err(
                Exit::config("--media-endpoint applies to s3:// storage only; unset COLONY_MEDIA_ENDPOINT").into()
            );
        }
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| Exit::config(format!("cannot listen on {}: {e}", args.bind)))?;
    Ok((listener, Web::new(pool, store, presigner, args).await))
}

/// Serve until `stop` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    web: Web,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(address = ?listener.local_addr().ok(), token = web.access.has_token(), "serving the dashboard");
    let app = router(web).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(stop).await.context("the web server failed")
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (listener, web) = bind(&args).await?;
    let address = listener.local_addr().unwrap_or(args.bind);
    println!("dashboard: http://{address}/ (metrics at /metrics)");
    let stop = colony::signals::stop_signal().context("installing the SIGTERM handler")?;
    run(listener, web, stop).await
}

/// Every route.
pub fn router(web: Web) -> Router {
    let api = Router::new()
        .route("/status", get(api::status))
        .route("/overview", get(api::overview))
        .route("/channels", get(api::channels).post(actions::add_channel))
        .route("/channels/{login}", get(api::channel))
        .route("/channels/{login}/enable", post(actions::enable))
        .route("/channels/{login}/disable", post(actions::disable))
        .route("/recordings/{id}", get(api::recording))
        .route("/recordings/{id}/export", post(actions::export))
        .route("/recordings/{id}/chat", get(api::chat))
        .route("/jobs", get(api::jobs))
        .route("/jobs/events", get(api::job_events))
        .route("/jobs/{id}/retry", post(actions::retry))
        .route("/jobs/{id}/cancel", post(actions::cancel))
        .route("/cells", get(api::cells))
        .route("/decisions", get(api::decisions))
        .route("/csrf", get(api::csrf));
    let protected = Router::new()
        .route("/", get(pages::overview))
        .route("/channels/{login}", get(pages::channel))
        .route("/recordings/{id}", get(pages::recording))
        .route("/jobs", get(pages::jobs))
        .route("/cells", get(pages::cells))
        .route("/metrics", get(metrics::handler))
        .route("/media/recordings/{id}/playlist.m3u8", get(media::playlist))
        .route("/media/recordings/{id}/objects/{*key}", get(media::object))
        .nest("/api/v1", api)
        .layer(axum::middleware::from_fn_with_state(web.clone(), access::guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/login", get(pages::login).post(access::login))
        .route("/static/{name}", get(assets::asset))
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(web.clone(), access::hosts_and_origins))
        .layer(axum::middleware::from_fn_with_state(web.clone(), access::security_headers))
        .with_state(web)
}

async fn readyz(State(web): State<Web>) -> Response {
    match colony::db::check_schema(&web.pool, "the database").await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}
