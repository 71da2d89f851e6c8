//! A local fake of the Twitch API, for tests on loopback (the real one
//! cannot be reached from here). It follows the public references:
//!
//! - the client-credentials grant, `POST /oauth2/token`
//!   (<https://dev.twitch.tv/docs/authentication/getting-tokens-oauth/#client-credentials-grant-flow>):
//!   `{"access_token", "expires_in", "token_type": "bearer"}`;
//! - `GET /helix/streams` (<https://dev.twitch.tv/docs/api/reference/#get-streams>):
//!   up to 100 `user_login` or `user_id`, `first` up to 100, live streams
//!   only, each `{id, user_id, user_login, user_name, game_id, game_name,
//!   type: "live", title, tags, viewer_count, started_at, language,
//!   thumbnail_url, is_mature}`, and a `pagination` object;
//! - `GET /helix/users` (<https://dev.twitch.tv/docs/api/reference/#get-users>):
//!   up to 100 `login` or `id`;
//! - `GET /helix/videos` (<https://dev.twitch.tv/docs/api/reference/#get-videos>):
//!   `user_id`, `type=archive`, `first`, `after`, with a `pagination.cursor`;
//! - rate limits (<https://dev.twitch.tv/docs/api/guide/#twitch-rate-limits>):
//!   a bucket of 800 points a minute for an app token, one point a request,
//!   reported in `Ratelimit-Limit`, `Ratelimit-Remaining` and
//!   `Ratelimit-Reset` (a Unix time in seconds), and `429 Too Many Requests`
//!   when it is empty;
//! - errors as `{"error", "status", "message"}`: `401` for a missing,
//!   expired or revoked token or a `Client-Id` that does not match it.
//!
//! Tests script it: who exists, who is live with what title and category,
//! tokens revoked, 429 storms. It counts every request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fakeclientid0123456789";
pub const CLIENT_SECRET: &str = "fakeclientsecret0123456789";
/// The bucket of an app token, in points a minute.
pub const BUCKET: u32 = 800;

#[derive(Debug, Clone)]
struct Live {
    id: String,
    title: String,
    game_id: String,
    game_name: String,
    started_at: String,
}

#[derive(Debug, Clone)]
pub struct Video {
    pub id: String,
    pub stream_id: Option<String>,
    pub title: String,
    pub created_at: String,
    pub duration: String,
}

#[derive(Default)]
struct Twitch {
    /// login → user id
    users: BTreeMap<String, String>,
    live: HashMap<String, Live>,
    videos: HashMap<String, Vec<Video>>,
    tokens: HashMap<String, SystemTime>,
    issued: u64,
    /// Requests left in the current minute, and when it ends (Unix seconds).
    remaining: u32,
    reset_at: u64,
    /// The next this many API requests answer 429, whatever the bucket says.
    storm: u32,
    token_lifetime: Duration,
    /// Every request, by path (`/oauth2/token`, `/helix/streams`, …).
    requests: Vec<String>,
    next_stream: u64,
}

type Shared = Arc<Mutex<Twitch>>;

/// A running fake. Dropping it stops the server.
pub struct FakeTwitch {
    pub addr: SocketAddr,
    state: Shared,
    _server: crate::Server,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn error(status: StatusCode, message: &str) -> Response {
    let body =
        json!({ "error": status.canonical_reason().unwrap_or(""), "status": status.as_u16(), "message": message });
    (status, axum::Json(body)).into_response()
}

fn params(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

impl FakeTwitch {
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(Twitch {
            remaining: BUCKET,
            reset_at: now_secs() + 60,
            token_lifetime: Duration::from_secs(5_000_000),
            next_stream: 40_000_000_000,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .route("/helix/streams", get(streams))
            .route("/helix/users", get(users))
            .route("/helix/videos", get(videos))
            .with_state(state.clone());
        let (addr, server) = crate::serve_loopback(app).await;
        Self { addr, state, _server: server }
    }

    /// `COLONY_TWITCH_API_URL`
    pub fn api_url(&self) -> String {
        format!("http://{}/helix", self.addr)
    }

    /// `COLONY_TWITCH_AUTH_URL`
    pub fn auth_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// The environment a mothership needs to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLONY_TWITCH_CLIENT_ID", CLIENT_ID.into()),
            ("COLONY_TWITCH_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("COLONY_TWITCH_API_URL", self.api_url()),
            ("COLONY_TWITCH_AUTH_URL", self.auth_url()),
        ]
    }

    fn with<T>(&self, f: impl FnOnce(&mut Twitch) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// A user (a channel) named `login`; returns its id.
    pub fn add_user(&self, login: &str) -> String {
        self.with(|t| {
            let id = (100_000_000 + t.users.len() as u64).to_string();
            t.users.entry(login.to_owned()).or_insert(id).clone()
        })
    }

    pub fn user_id(&self, login: &str) -> Option<String> {
        self.with(|t| t.users.get(login).cloned())
    }

    /// `login` goes live (a new stream id) with this title and category.
    pub fn go_live(&self, login: &str, title: &str, category: &str) {
        self.with(|t| {
            t.next_stream += 1;
            let live = Live {
                id: t.next_stream.to_string(),
                title: title.to_owned(),
                game_id: format!("{}", 500 + category.len()),
                game_name: category.to_owned(),
                started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            t.live.insert(login.to_owned(), live);
        })
    }

    /// The broadcaster changes the title or category of the running stream.
    pub fn retitle(&self, login: &str, title: &str, category: &str) {
        self.with(|t| {
            if let Some(live) = t.live.get_mut(login) {
                live.title = title.to_owned();
                live.game_name = category.to_owned();
            }
        })
    }

    pub fn go_offline(&self, login: &str) {
        self.with(|t| {
            t.live.remove(login);
        })
    }

    /// The stream id `login` is live with.
    pub fn stream_id(&self, login: &str) -> Option<String> {
        self.with(|t| t.live.get(login).map(|l| l.id.clone()))
    }

    /// Past broadcasts of `login`, newest first.
    pub fn set_videos(&self, login: &str, videos: Vec<Video>) {
        self.with(|t| {
            let id = t.users.get(login).cloned().expect("add the user first");
            t.videos.insert(id, videos);
        })
    }

    /// Every token issued so far stops working (401), as when the app's
    /// secret is rotated.
    pub fn revoke_tokens(&self) {
        self.with(|t| t.tokens.clear())
    }

    /// Tokens issued from now on expire after `lifetime`.
    pub fn token_lifetime(&self, lifetime: Duration) {
        self.with(|t| t.token_lifetime = lifetime)
    }

    /// The next `n` API requests answer 429 with an empty bucket that
    /// refills within a second.
    pub fn storm(&self, n: u32) {
        self.with(|t| t.storm = n)
    }

    /// Requests to `path` (`/helix/streams`, `/oauth2/token`, …) so far.
    pub fn requests(&self, path: &str) -> usize {
        self.with(|t| t.requests.iter().filter(|p| *p == path).count())
    }

    pub fn clear_requests(&self) {
        self.with(|t| t.requests.clear())
    }
}

async fn token(State(state): State<Shared>, RawQuery(query): RawQuery, body: String) -> Response {
    let mut t = state.lock().unwrap();
    t.requests.push("/oauth2/token".into());
    // Parameters may come in the query string (as Twitch documents) or a form body.
    let mut p = params(query);
    p.extend(params(Some(body)));
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return error(StatusCode::BAD_REQUEST, "invalid grant type");
    }
    if get("client_id") != CLIENT_ID {
        return error(StatusCode::BAD_REQUEST, "invalid client");
    }
    if get("client_secret") != CLIENT_SECRET {
        return error(StatusCode::FORBIDDEN, "invalid client secret");
    }
    t.issued += 1;
    let token = format!("faketoken{:020}", t.issued);
    let lifetime = t.token_lifetime;
    t.tokens.insert(token.clone(), SystemTime::now() + lifetime);
    axum::Json(json!({ "access_token": token, "expires_in": lifetime.as_secs(), "token_type": "bearer" }))
        .into_response()
}

/// The checks every Helix call makes: rate limit, then authentication.
fn admit(t: &mut Twitch, headers: &HeaderMap, path: &str) -> Result<(), Box<Response>> {
    t.requests.push(path.to_owned());
    let now = now_secs();
    if now >= t.reset_at {
        t.remaining = BUCKET;
        t.reset_at = now + 60;
    }
    let limited = |remaining: u32, reset: u64| {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        let h = r.headers_mut();
        h.insert("Ratelimit-Limit", HeaderValue::from(BUCKET));
        h.insert("Ratelimit-Remaining", HeaderValue::from(remaining));
        h.insert("Ratelimit-Reset", HeaderValue::from(reset));
        r
    };
    if t.storm > 0 {
        t.storm -= 1;
        return Err(Box::new(limited(0, now + 1)));
    }
    if t.remaining == 0 {
        return Err(Box::new(limited(0, t.reset_at)));
    }
    t.remaining -= 1;
    let client = headers.get("Client-Id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let bearer = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let valid = t.tokens.get(bearer).is_some_and(|exp| *exp > SystemTime::now());
    if client != CLIENT_ID || !valid {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Invalid OAuth token")));
    }
    Ok(())
}

fn with_limits(t: &Twitch, body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    h.insert("Ratelimit-Limit", HeaderValue::from(BUCKET));
    h.insert("Ratelimit-Remaining", HeaderValue::from(t.remaining));
    h.insert("Ratelimit-Reset", HeaderValue::from(t.reset_at));
    r
}

async fn streams(State(state): State<Shared>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let mut t = state.lock().unwrap();
    if let Err(r) = admit(&mut t, &headers, "/helix/streams") {
        return *r;
    }
    let p = params(query);
    let logins: Vec<&str> = p.iter().filter(|(k, _)| k == "user_login").map(|(_, v)| v.as_str()).collect();
    let ids: HashSet<&str> = p.iter().filter(|(k, _)| k == "user_id").map(|(_, v)| v.as_str()).collect();
    if logins.len() + ids.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "The parameter \"user_login\" was malformed: too many values");
    }
    let first: usize = p.iter().find(|(k, _)| k == "first").and_then(|(_, v)| v.parse().ok()).unwrap_or(20);
    if !(1..=100).contains(&first) {
        return error(StatusCode::BAD_REQUEST, "The parameter \"first\" was malformed");
    }
    let wanted =
        |login: &str, id: &str| (logins.is_empty() && ids.is_empty()) || logins.contains(&login) || ids.contains(id);
    let data: Vec<Value> = t
        .users
        .iter()
        .filter(|(login, id)| wanted(login, id))
        .filter_map(|(login, id)| t.live.get(login).map(|l| (login, id, l)))
        .take(first)
        .map(|(login, id, l)| {
            json!({
                "id": l.id, "user_id": id, "user_login": login, "user_name": login.to_uppercase(),
                "game_id": l.game_id, "game_name": l.game_name, "type": "live", "title": l.title,
                "tags": ["English"], "viewer_count": 42, "started_at": l.started_at, "language": "en",
                "thumbnail_url": format!("https://static-cdn.jtvnw.net/previews-ttv/live_user_{login}-{{width}}x{{height}}.jpg"),
                "tag_ids": [], "is_mature": false
            })
        })
        .collect();
    with_limits(&t, json!({ "data": data, "pagination": {} }))
}

async fn users(State(state): State<Shared>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let mut t = state.lock().unwrap();
    if let Err(r) = admit(&mut t, &headers, "/helix/users") {
        return *r;
    }
    let p = params(query);
    let logins: Vec<&str> = p.iter().filter(|(k, _)| k == "login").map(|(_, v)| v.as_str()).collect();
    let ids: Vec<&str> = p.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.as_str()).collect();
    if logins.len() + ids.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "too many values");
    }
    let data: Vec<Value> = t
        .users
        .iter()
        .filter(|(login, id)| logins.contains(&login.as_str()) || ids.contains(&id.as_str()))
        .map(|(login, id)| {
            json!({
                "id": id, "login": login, "display_name": login.to_uppercase(), "type": "",
                "broadcaster_type": "affiliate", "description": "", "profile_image_url": "",
                "offline_image_url": "", "view_count": 0, "created_at": "2016-12-14T20:32:28Z"
            })
        })
        .collect();
    with_limits(&t, json!({ "data": data }))
}

async fn videos(State(state): State<Shared>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let mut t = state.lock().unwrap();
    if let Err(r) = admit(&mut t, &headers, "/helix/videos") {
        return *r;
    }
    let p = params(query);
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(user_id) = get("user_id") else {
        return error(StatusCode::BAD_REQUEST, "Missing required parameter \"user_id\"");
    };
    let first: usize = get("first").and_then(|v| v.parse().ok()).unwrap_or(20).clamp(1, 100);
    let start: usize = get("after").and_then(|c| c.strip_prefix("cursor-").and_then(|n| n.parse().ok())).unwrap_or(0);
    let all = t.videos.get(&user_id).cloned().unwrap_or_default();
    let login = t.users.iter().find(|(_, id)| **id == user_id).map(|(l, _)| l.clone()).unwrap_or_default();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(first)
        .map(|v| {
            json!({
                "id": v.id, "stream_id": v.stream_id, "user_id": user_id, "user_login": login,
                "user_name": login.to_uppercase(), "title": v.title, "description": "",
                "created_at": v.created_at, "published_at": v.created_at,
                "url": format!("https://www.twitch.tv/videos/{}", v.id), "thumbnail_url": "",
                "viewable": "public", "view_count": 1, "language": "en", "type": "archive",
                "duration": v.duration, "muted_segments": null
            })
        })
        .collect();
    let pagination =
        if start + first < all.len() { json!({ "cursor": format!("cursor-{}", start + first) }) } else { json!({}) };
    with_limits(&t, json!({ "data": page, "pagination": pagination }))
}
