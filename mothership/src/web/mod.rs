//! `mothership serve`: the operator's web surface, one long-running axum
//! server beside the tick loop. It reads Postgres (never writes it except
//! through the admin functions the CLI uses) and points browsers at media.
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
//! Access: loopback by default. Any other address needs `COLONY_WEB_TOKEN`,
//! sent as `Authorization: Bearer …` or the cookie `/login` sets. Every POST
//! carries the CSRF token the pages embed (`csrf` form field or
//! `x-csrf-token` header); without it the answer is 403.

mod actions;
mod api;
mod data;
mod media;
pub mod metrics;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use colony::config::DatabaseArgs;
use colony::exit::Exit;
use colony::storage::{ObjectStore, StorageArgs};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::platform::PlatformArgs;

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
    /// sign in at /login). /healthz and /readyz answer without it.
    #[arg(long, env = "COLONY_WEB_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
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
    token: Option<Arc<str>>,
    csrf: Arc<str>,
    pub metrics: Arc<metrics::Cache>,
    pub media_url_ttl: Duration,
}

impl Web {
    pub fn new(pool: PgPool, store: Arc<dyn ObjectStore>, presigner: Arc<dyn ObjectStore>, args: &ServeArgs) -> Self {
        let csrf: [u8; 24] = rand::random();
        Self {
            pool,
            store,
            presigner,
            platforms: args.platforms.clone(),
            token: args.token.as_deref().filter(|t| !t.is_empty()).map(Arc::from),
            csrf: Arc::from(hex::encode(csrf)),
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
            WebError::Internal(e) => {
                tracing::warn!(error = %format!("{e:#}"), "a web request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the server's log says why".to_owned())
            }
        };
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// Refuse to listen beyond loopback without a token.
pub fn check_exposure(bind: SocketAddr, token: Option<&str>) -> Result<(), Exit> {
    if !bind.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(Exit::config(format!(
            "refusing to serve on {bind} without COLONY_WEB_TOKEN: set it (e.g. `openssl rand -hex 32`), or bind 127.0.0.1"
        )));
    }
    Ok(())
}

/// Check the exposure, connect, and take the port: everything that can fail
/// on bad configuration, before anything is served.
pub async fn bind(args: &ServeArgs) -> anyhow::Result<(tokio::net::TcpListener, Web)> {
    check_exposure(args.bind, args.token.as_deref())?;
    let pool = colony::db::connect(&args.db).await?;
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
    Ok((listener, Web::new(pool, store, presigner, args)))
}

/// Serve until `stop` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    web: Web,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(address = ?listener.local_addr().ok(), token = web.token.is_some(), "serving the dashboard");
    axum::serve(listener, router(web)).with_graceful_shutdown(stop).await.context("the web server failed")
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
        .layer(axum::middleware::from_fn_with_state(web.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/login", get(pages::login).post(login))
        .merge(protected)
        .with_state(web)
}

async fn readyz(State(web): State<Web>) -> Response {
    match colony::db::check_schema(&web.pool, "the database").await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

const COOKIE: &str = "colony_token";

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token check (when a token is set) and the CSRF check of every POST.
async fn guard(State(web): State<Web>, request: Request, next: Next) -> Response {
    if let Some(token) = web.token.as_deref() {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let given = bearer.or_else(|| cookie(headers, COOKIE));
        if !given.is_some_and(|g| same(g, token)) {
            let html =
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
            if html && request.method() == axum::http::Method::GET {
                return (StatusCode::UNAUTHORIZED, pages::login_page(Some("sign in with the dashboard's token")))
                    .into_response();
            }
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": "a valid token is needed: Authorization: Bearer TOKEN" })),
            )
                .into_response();
        }
    }
    if request.method() == axum::http::Method::POST {
        let (parts, body) = request.into_parts();
        // Forms are small; 64 KiB is far more than any of ours.
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return WebError::BadRequest("the request body is too large".into()).into_response();
        };
        let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let from_form = form_field(&bytes, "csrf");
        if !from_header.or(from_form).is_some_and(|t| same(&t, &web.csrf)) {
            return WebError::Forbidden("missing or wrong CSRF token (the csrf form field or x-csrf-token header)")
                .into_response();
        }
        return next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    }
    next.run(request).await
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// Check the token and keep it in an HttpOnly cookie.
async fn login(State(web): State<Web>, axum::Form(form): axum::Form<LoginForm>) -> Response {
    match web.token.as_deref() {
        Some(token) if same(form.token.trim(), token) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")),
                (header::LOCATION, "/".to_owned()),
            ],
        )
            .into_response(),
        Some(_) => {
            (StatusCode::UNAUTHORIZED, pages::login_page(Some("that is not the dashboard's token"))).into_response()
        }
        None => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_go_without_a_token() {
        assert!(check_exposure("127.0.0.1:8080".parse().unwrap(), None).is_ok());
        assert!(check_exposure("[::1]:8080".parse().unwrap(), None).is_ok());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), None).is_err());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some("")).is_err());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some("t")).is_ok());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; colony_token=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(form_field(b"x=1&csrf=a%2Bb", "csrf").as_deref(), Some("a+b"));
    }
}
