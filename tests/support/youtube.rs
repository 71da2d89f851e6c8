//! A local fake of YouTube's channel feeds and Data API v3, for tests on
//! loopback (the real ones cannot be reached from here). It follows the
//! public references:
//!
//! - the channel feed, `GET /feeds/videos.xml?channel_id=UC…`: an Atom feed
//!   (`xmlns:yt="http://www.youtube.com/xml/schemas/2015"`) whose entries,
//!   newest first, carry `<yt:videoId>`, `<yt:channelId>`, `<title>` and
//!   `<published>`; 404 for an unknown channel;
//! - `GET /youtube/v3/videos?part=liveStreamingDetails,snippet&id=a,b,…&key=`
//!   (<https://developers.google.com/youtube/v3/docs/videos/list>): at most
//!   50 ids; `items[]` of `{kind: "youtube#video", id, snippet: {channelId,
//!   title, liveBroadcastContent: live|upcoming|none}, liveStreamingDetails:
//!   {actualStartTime, actualEndTime, scheduledStartTime, concurrentViewers}}`,
//!   unknown ids left out; 1 quota unit a call
//!   (<https://developers.google.com/youtube/v3/determine_quota_cost>);
//! - `GET /youtube/v3/channels?part=id|contentDetails&forHandle=@h|id=UC…`
//!   (<https://developers.google.com/youtube/v3/docs/channels/list>):
//!   `items[{id, contentDetails: {relatedPlaylists: {uploads: "UU…"}}}]`;
//! - `GET /youtube/v3/playlistItems?part=contentDetails&playlistId=UU…&maxResults=&pageToken=`
//!   (<https://developers.google.com/youtube/v3/docs/playlistItems/list>):
//!   `items[{contentDetails: {videoId, videoPublishedAt}}]` and
//!   `nextPageToken` while more remain;
//! - errors as `{"error": {"code", "message", "errors": [{"reason"}]}}`:
//!   400 `keyInvalid` without the key, 403 `quotaExceeded` once the quota is spent.
//!
//! Tests script it: channels, their videos, who is live. It counts quota
//! units and every request.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub const API_KEY: &str = "fake-youtube-api-key-0123456789";

#[derive(Debug, Clone)]
pub struct Video {
    pub id: String,
    pub title: String,
    /// `live`, `upcoming` or `none`.
    pub state: &'static str,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub published_at: String,
}

#[derive(Default)]
struct YouTube {
    /// channel id → handle
    channels: BTreeMap<String, String>,
    /// channel id → videos, newest first
    videos: HashMap<String, Vec<Video>>,
    units: u64,
    quota: u64,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<YouTube>>;

/// A running fake. Dropping it stops the server.
pub struct FakeYouTube {
    pub addr: SocketAddr,
    state: Shared,
    _server: crate::Server,
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "message": message,
        "errors": [{ "message": message, "domain": "youtube.quota", "reason": reason }] } });
    (status, axum::Json(body)).into_response()
}

fn params(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl FakeYouTube {
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(YouTube { quota: 10_000, ..Default::default() }));
        let app = Router::new()
            .route("/feeds/videos.xml", get(feed))
            .route("/youtube/v3/videos", get(videos))
            .route("/youtube/v3/channels", get(channels))
            .route("/youtube/v3/playlistItems", get(playlist_items))
            .with_state(state.clone());
        let (addr, server) = crate::serve_loopback(app).await;
        Self { addr, state, _server: server }
    }

    /// The environment a mothership needs to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLONY_YOUTUBE_API_KEY", API_KEY.into()),
            ("COLONY_YOUTUBE_API_URL", format!("http://{}/youtube/v3", self.addr)),
            ("COLONY_YOUTUBE_FEED_URL", format!("http://{}/feeds/videos.xml", self.addr)),
        ]
    }

    fn with<T>(&self, f: impl FnOnce(&mut YouTube) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// A channel with this handle; returns its `UC…` id.
    pub fn add_channel(&self, handle: &str) -> String {
        self.with(|y| {
            let id = format!("UC{:0>22}", y.channels.len());
            y.channels.insert(id.clone(), handle.to_owned());
            id
        })
    }

    /// Put a video at the top of a channel's feed.
    pub fn upload(&self, channel_id: &str, video: Video) {
        self.with(|y| y.videos.entry(channel_id.to_owned()).or_default().insert(0, video));
    }

    /// A live broadcast at the top of the feed.
    pub fn go_live(&self, channel_id: &str, video_id: &str, title: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.upload(
            channel_id,
            Video {
                id: video_id.into(),
                title: title.into(),
                state: "live",
                started_at: Some(now.clone()),
                ended_at: None,
                published_at: now,
            },
        );
    }

    /// The channel's live broadcast ends (it stays in the feed, as on YouTube).
    pub fn end_live(&self, channel_id: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.with(|y| {
            for v in y.videos.entry(channel_id.to_owned()).or_default().iter_mut().filter(|v| v.state == "live") {
                v.state = "none";
                v.ended_at = Some(now.clone());
            }
        })
    }

    /// Quota units spent.
    pub fn units(&self) -> u64 {
        self.with(|y| y.units)
    }

    pub fn requests(&self, path: &str) -> usize {
        self.with(|y| y.requests.iter().filter(|p| *p == path).count())
    }

    pub fn clear_requests(&self) {
        self.with(|y| {
            y.requests.clear();
            y.units = 0;
        })
    }
}

/// Count the request and its quota; refuse it without the key or quota.
fn charge(y: &mut YouTube, path: &str, p: &[(String, String)]) -> Result<(), Box<Response>> {
    y.requests.push(path.to_owned());
    if param(p, "key") != Some(API_KEY) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "keyInvalid",
            "API key not valid. Please pass a valid API key.",
        )));
    }
    if y.units >= y.quota {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "quotaExceeded",
            "The request cannot be completed because you have exceeded your quota.",
        )));
    }
    y.units += 1;
    Ok(())
}

async fn feed(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut y = state.lock().unwrap();
    y.requests.push("/feeds/videos.xml".into());
    let Some(channel) = param(&p, "channel_id").filter(|c| y.channels.contains_key(*c)).map(str::to_owned) else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let handle = y.channels[&channel].clone();
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
 <link rel="self" href="http://www.youtube.com/feeds/videos.xml?channel_id={channel}"/>
 <id>yt:channel:{channel}</id>
 <yt:channelId>{channel}</yt:channelId>
 <title>{handle}</title>
"#
    );
    // YouTube lists the newest 15.
    for v in y.videos.get(&channel).into_iter().flatten().take(15) {
        xml.push_str(&format!(
            " <entry>\n  <id>yt:video:{id}</id>\n  <yt:videoId>{id}</yt:videoId>\n  <yt:channelId>{ch}</yt:channelId>\n  \
             <title>{title}</title>\n  <published>{published}</published>\n </entry>\n",
            id = v.id,
            ch = channel,
            title = v.title.replace('&', "&amp;").replace('<', "&lt;"),
            published = v.published_at,
        ));
    }
    xml.push_str("</feed>\n");
    ([("content-type", "application/atom+xml; charset=UTF-8")], xml).into_response()
}

fn video_json(channel: &str, v: &Video) -> Value {
    let mut details = serde_json::Map::new();
    if let Some(s) = &v.started_at {
        details.insert("actualStartTime".into(), json!(s));
    }
    if let Some(e) = &v.ended_at {
        details.insert("actualEndTime".into(), json!(e));
    }
    if v.state == "live" {
        details.insert("concurrentViewers".into(), json!("12"));
    }
    let mut item = json!({
        "kind": "youtube#video", "etag": "x", "id": v.id,
        "snippet": { "publishedAt": v.published_at, "channelId": channel, "title": v.title,
                     "description": "", "categoryId": "20", "liveBroadcastContent": v.state },
    });
    if v.started_at.is_some() || v.state != "none" {
        item["liveStreamingDetails"] = Value::Object(details);
    }
    item
}

async fn videos(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut y = state.lock().unwrap();
    if let Err(r) = charge(&mut y, "/youtube/v3/videos", &p) {
        return *r;
    }
    let ids: Vec<&str> = param(&p, "id").unwrap_or_default().split(',').filter(|s| !s.is_empty()).collect();
    if ids.len() > 50 {
        return error(StatusCode::BAD_REQUEST, "tooManyIds", "at most 50 ids");
    }
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            y.videos.iter().find_map(|(ch, vs)| vs.iter().find(|v| v.id == *id).map(|v| video_json(ch, v)))
        })
        .collect();
    axum::Json(json!({ "kind": "youtube#videoListResponse", "items": items,
        "pageInfo": { "totalResults": items.len(), "resultsPerPage": items.len() } }))
    .into_response()
}

async fn channels(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut y = state.lock().unwrap();
    if let Err(r) = charge(&mut y, "/youtube/v3/channels", &p) {
        return *r;
    }
    let found: Option<String> = match (param(&p, "forHandle"), param(&p, "id")) {
        (Some(h), _) => {
            let h = h.trim_start_matches('@').to_ascii_lowercase();
            y.channels.iter().find(|(_, handle)| handle.to_ascii_lowercase() == h).map(|(id, _)| id.clone())
        }
        (None, Some(id)) => y.channels.contains_key(id).then(|| id.to_owned()),
        _ => return error(StatusCode::BAD_REQUEST, "missingRequiredParameter", "No filter selected."),
    };
    let items: Vec<Value> = found
        .into_iter()
        .map(|id| {
            json!({ "kind": "youtube#channel", "id": id,
            "contentDetails": { "relatedPlaylists": { "likes": "", "uploads": format!("UU{}", &id[2..]) } } })
        })
        .collect();
    axum::Json(json!({ "kind": "youtube#channelListResponse", "items": items })).into_response()
}

async fn playlist_items(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut y = state.lock().unwrap();
    if let Err(r) = charge(&mut y, "/youtube/v3/playlistItems", &p) {
        return *r;
    }
    let Some(channel) = param(&p, "playlistId").and_then(|l| l.strip_prefix("UU")).map(|rest| format!("UC{rest}"))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "playlistNotFound",
            "The playlist identified with the request's playlistId parameter cannot be found.",
        );
    };
    if !y.channels.contains_key(&channel) {
        return error(
            StatusCode::NOT_FOUND,
            "playlistNotFound",
            "The playlist identified with the request's playlistId parameter cannot be found.",
        );
    }
    let per_page: usize = param(&p, "maxResults").and_then(|m| m.parse().ok()).unwrap_or(5).clamp(0, 50);
    let start: usize =
        param(&p, "pageToken").and_then(|t| t.strip_prefix("CD")).and_then(|t| t.parse().ok()).unwrap_or(0);
    let all = y.videos.get(&channel).cloned().unwrap_or_default();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(per_page)
        .map(|v| {
            json!({ "kind": "youtube#playlistItem", "id": format!("PI{}", v.id),
            "contentDetails": { "videoId": v.id, "videoPublishedAt": v.published_at } })
        })
        .collect();
    let mut answer = json!({ "kind": "youtube#playlistItemListResponse", "items": page,
        "pageInfo": { "totalResults": all.len(), "resultsPerPage": per_page } });
    if start + per_page < all.len() {
        answer["nextPageToken"] = json!(format!("CD{}", start + per_page));
    }
    axum::Json(answer).into_response()
}
