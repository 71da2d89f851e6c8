//! A local fake of Kick's public API, for tests on loopback (the real one
//! cannot be reached from here). It follows the public references at
//! <https://docs.kick.com>:
//!
//! - the client-credentials grant, `POST /oauth/token` on `id.kick.com`
//!   (<https://docs.kick.com/getting-started/generating-tokens-oauth2-flow>):
//!   form `grant_type=client_credentials&client_id&client_secret`, answered
//!   `{"access_token", "token_type": "Bearer", "expires_in"}`;
//! - `GET /public/v1/channels?slug=a&slug=b…` (<https://docs.kick.com/apis/channels>):
//!   at most 50 slugs; `{"data": [{broadcaster_user_id, slug, stream_title,
//!   channel_description, banner_picture, category: {id, name, thumbnail},
//!   stream: {is_live, is_mature, key, language, start_time, thumbnail,
//!   url, viewer_count}}], "message": "OK"}`, unknown slugs left out;
//! - `GET /public/v1/livestreams?broadcaster_user_id=…` (<https://docs.kick.com/apis/livestreams>):
//!   `{"data": [{broadcaster_user_id, channel_id, slug, stream_title,
//!   started_at, category, viewer_count, language, has_mature_content,
//!   thumbnail}], "message": "OK"}`;
//! - 401 `{"message": "Unauthorized"}` without a valid bearer token, and
//!   429 when the test asks for a storm (Kick sends no rate-limit headers).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fake-kick-client-0123456789";
pub const CLIENT_SECRET: &str = "fake-kick-secret-0123456789";

#[derive(Debug, Clone)]
struct Live {
    title: String,
    category: String,
    started_at: String,
}

#[derive(Default)]
struct Kick {
    /// slug → broadcaster user id
    channels: BTreeMap<String, u64>,
    live: BTreeMap<String, Live>,
    tokens: HashSet<String>,
    issued: u64,
    /// The next this many API requests answer 429.
    storm: u32,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<Kick>>;

/// A running fake. Dropping it stops the server.
pub struct FakeKick {
    pub addr: SocketAddr,
    state: Shared,
    _server: crate::Server,
}

fn message(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "data": {}, "message": message }))).into_response()
}

fn params(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

impl FakeKick {
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(Kick::default()));
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/public/v1/channels", get(channels))
            .route("/public/v1/livestreams", get(livestreams))
            .with_state(state.clone());
        let (addr, server) = crate::serve_loopback(app).await;
        Self { addr, state, _server: server }
    }

    /// The environment a mothership needs to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLONY_KICK_CLIENT_ID", CLIENT_ID.into()),
            ("COLONY_KICK_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("COLONY_KICK_API_URL", format!("http://{}/public/v1", self.addr)),
            ("COLONY_KICK_AUTH_URL", format!("http://{}/oauth/token", self.addr)),
        ]
    }

    fn with<T>(&self, f: impl FnOnce(&mut Kick) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn add_channel(&self, slug: &str) {
        self.with(|k| {
            let id = 1_000 + k.channels.len() as u64;
            k.channels.entry(slug.to_owned()).or_insert(id);
        })
    }

    pub fn go_live(&self, slug: &str, title: &str, category: &str) {
        let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.with(|k| {
            k.live.insert(slug.to_owned(), Live { title: title.into(), category: category.into(), started_at })
        });
    }

    pub fn go_offline(&self, slug: &str) {
        self.with(|k| k.live.remove(slug));
    }

    /// The next `n` API requests answer 429.
    pub fn storm(&self, n: u32) {
        self.with(|k| k.storm = n);
    }

    pub fn revoke_tokens(&self) {
        self.with(|k| k.tokens.clear());
    }

    pub fn requests(&self, path: &str) -> usize {
        self.with(|k| k.requests.iter().filter(|p| *p == path).count())
    }

    pub fn clear_requests(&self) {
        self.with(|k| k.requests.clear());
    }
}

async fn token(State(state): State<Shared>, body: String) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let mut k = state.lock().unwrap();
    k.requests.push("/oauth/token".into());
    if get("grant_type") != Some("client_credentials")
        || get("client_id") != Some(CLIENT_ID)
        || get("client_secret") != Some(CLIENT_SECRET)
    {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
    }
    k.issued += 1;
    let t = format!("kicktoken{:08}", k.issued);
    k.tokens.insert(t.clone());
    axum::Json(json!({ "access_token": t, "token_type": "Bearer", "expires_in": 3600 })).into_response()
}

/// Count the request; refuse it during a storm or without a valid token.
fn admit(k: &mut Kick, path: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    k.requests.push(path.to_owned());
    if k.storm > 0 {
        k.storm -= 1;
        return Err(Box::new(message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")));
    }
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|b| k.tokens.contains(b)) {
        return Err(Box::new(message(StatusCode::UNAUTHORIZED, "Unauthorized")));
    }
    Ok(())
}

fn channel_json(k: &Kick, slug: &str, id: u64) -> Value {
    let live = k.live.get(slug);
    json!({
        "broadcaster_user_id": id,
        "slug": slug,
        "channel_description": "",
        "banner_picture": "",
        "stream_title": live.map(|l| l.title.clone()).unwrap_or_default(),
        "category": { "id": 15, "name": live.map(|l| l.category.clone()).unwrap_or_default(), "thumbnail": "" },
        "stream": {
            "is_live": live.is_some(),
            "is_mature": false,
            "key": "",
            "language": "en",
            "start_time": live.map(|l| l.started_at.clone()).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "thumbnail": "",
            "url": "",
            "viewer_count": if live.is_some() { 42 } else { 0 },
        },
    })
}

async fn channels(State(state): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut k = state.lock().unwrap();
    if let Err(r) = admit(&mut k, "/public/v1/channels", &headers) {
        return *r;
    }
    let slugs: Vec<&str> = p.iter().filter(|(n, _)| n == "slug").map(|(_, v)| v.as_str()).collect();
    if slugs.len() > 50 {
        return message(StatusCode::BAD_REQUEST, "slug: at most 50 values");
    }
    let data: Vec<Value> = slugs.iter().filter_map(|s| k.channels.get(*s).map(|id| channel_json(&k, s, *id))).collect();
    axum::Json(json!({ "data": data, "message": "OK" })).into_response()
}

async fn livestreams(State(state): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut k = state.lock().unwrap();
    if let Err(r) = admit(&mut k, "/public/v1/livestreams", &headers) {
        return *r;
    }
    let ids: Vec<u64> =
        p.iter().filter(|(n, _)| n == "broadcaster_user_id").filter_map(|(_, v)| v.parse().ok()).collect();
    let data: Vec<Value> = k
        .channels
        .iter()
        .filter(|(slug, id)| (ids.is_empty() || ids.contains(id)) && k.live.contains_key(*slug))
        .map(|(slug, id)| {
            let l = &k.live[slug];
            json!({ "broadcaster_user_id": id, "channel_id": id, "slug": slug, "stream_title": l.title,
                "started_at": l.started_at, "category": { "id": 15, "name": l.category, "thumbnail": "" },
                "viewer_count": 42, "language": "en", "has_mature_content": false, "thumbnail": "" })
        })
        .collect();
    axum::Json(json!({ "data": data, "message": "OK" })).into_response()
}
