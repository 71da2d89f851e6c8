//! YouTube live detection without `search.list` (100 quota units a call):
//!
//! 1. A channel known by its handle gets its `UC…` id once, with
//!    `channels.list?forHandle=` (1 unit), kept in `channels.platform_id`.
//! 2. Each channel's RSS feed (`/feeds/videos.xml?channel_id=`, no quota)
//!    names its newest videos; a live or upcoming broadcast is among them.
//! 3. `videos.list?part=liveStreamingDetails,snippet` asks about 50 of those
//!    ids a call (1 unit): a video whose `liveBroadcastContent` is `live`,
//!    that has started and not ended, on the channel that listed it, is its
//!    broadcast.
//!
//! So a probe of N channels costs N feed requests and ceil(3N/50) units.
//! The default quota is 10,000 units a day: 100 channels probed every
//! minute cost 6 units a probe, 8,640 a day. Without `COLONY_YOUTUBE_API_KEY`
//! YouTube channels are probed with their resolver (yt-dlp), every
//! `--youtube-resolver-every`.
//!
//! References: <https://developers.google.com/youtube/v3/docs/videos/list>,
//! <https://developers.google.com/youtube/v3/docs/channels/list>,
//! <https://developers.google.com/youtube/v3/docs/playlistItems/list>,
//! <https://developers.google.com/youtube/v3/determine_quota_cost>.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::time::Instant;
use url::Url;

use colony::channel::Channel;
use colony::config::Secret;

use super::StreamInfo;
use super::api::{ApiError, clean, get_json, read_capped};

/// Video ids one `videos.list` call may ask about.
pub const BATCH: usize = 50;
/// The newest videos of a feed that are asked about.
pub const RECENT: usize = 3;
/// Feed requests in flight at once: a feed is one small request, and a
/// probe of 1,000 channels must fit in the probe's timeout (10 s by
/// default) at a real network's latency (1,000 / 32 × 0.2 s ≈ 6 s).
const IN_FLIGHT: usize = 32;
/// Handle lookups (`channels.list`, 1 unit each) in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 8;
const API: &str = "the YouTube Data API";
const FEED: &str = "YouTube's channel feed";

/// The YouTube Data API v3.
const API_URL: &str = "https://www.googleapis.com/youtube/v3";
/// YouTube's channel feeds.
const FEED_URL: &str = "https://www.youtube.com/feeds/videos.xml";

#[derive(Debug, Clone, clap::Args)]
pub struct YouTubeArgs {
    /// A YouTube Data API key (console.cloud.google.com). With it, live
    /// detection reads each channel's RSS feed and asks videos.list about 50
    /// videos a call (1 quota unit); without, each YouTube channel is probed
    /// with its resolver every --youtube-resolver-every.
    #[arg(
        id = "youtube_api_key",
        long = "youtube-api-key",
        env = "COLONY_YOUTUBE_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<Secret>,
    /// The Data API's base URL (a test fake's, in tests).
    #[arg(
        id = "youtube_api_url",
        long = "youtube-api-url",
        env = "COLONY_YOUTUBE_API_URL",
        default_value = API_URL,
        value_name = "URL"
    )]
    pub api_url: Url,
    /// The channel feeds' URL.
    #[arg(
        id = "youtube_feed_url",
        long = "youtube-feed-url",
        env = "COLONY_YOUTUBE_FEED_URL",
        default_value = FEED_URL,
        value_name = "URL"
    )]
    pub feed_url: Url,
    /// Without an API key: probe a YouTube channel with its resolver at most
    /// this often (a yt-dlp process each; YouTube throttles many).
    #[arg(
        id = "youtube_resolver_every",
        long = "youtube-resolver-every",
        env = "COLONY_YOUTUBE_RESOLVER_EVERY",
        default_value = "2m",
        value_name = "DURATION"
    )]
    pub resolver_every: humantime::Duration,
}

impl Default for YouTubeArgs {
    fn default() -> Self {
        Self {
            api_key: None,
            api_url: Url::parse(API_URL).expect("a valid URL"),
            feed_url: Url::parse(FEED_URL).expect("a valid URL"),
            resolver_every: Duration::from_secs(120).into(),
        }
    }
}

impl YouTubeArgs {
    pub fn configured(&self) -> bool {
        self.api_key.as_ref().is_some_and(|k| !k.expose().trim().is_empty())
    }
}

#[derive(Debug, Deserialize)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChannelItem {
    id: String,
    #[serde(rename = "contentDetails", default)]
    content_details: Option<ChannelContent>,
}

#[derive(Debug, Deserialize)]
struct ChannelContent {
    #[serde(rename = "relatedPlaylists", default)]
    related_playlists: HashMap<String, String>,
}

/// A video as `videos.list` reports it.
#[derive(Debug, Deserialize)]
pub struct Video {
    pub id: String,
    #[serde(default)]
    snippet: Option<Snippet>,
    #[serde(rename = "liveStreamingDetails", default)]
    live: Option<LiveDetails>,
}

#[derive(Debug, Deserialize)]
struct Snippet {
    #[serde(rename = "channelId", default)]
    channel_id: String,
    #[serde(default)]
    title: String,
    #[serde(rename = "liveBroadcastContent", default)]
    broadcast: String,
}

#[derive(Debug, Deserialize)]
struct LiveDetails {
    #[serde(rename = "actualStartTime", default)]
    actual_start: Option<DateTime<Utc>>,
    #[serde(rename = "actualEndTime", default)]
    actual_end: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct PlaylistItem {
    #[serde(rename = "contentDetails")]
    content_details: PlaylistContent,
}

#[derive(Debug, Deserialize)]
struct PlaylistContent {
    #[serde(rename = "videoId")]
    video_id: String,
    #[serde(rename = "videoPublishedAt", default)]
    published_at: Option<DateTime<Utc>>,
}

/// A past broadcast of a channel (`backfill --from-platform`).
#[derive(Debug, Clone, PartialEq)]
pub struct PastBroadcast {
    pub video_id: String,
    pub title: String,
    pub started_at: Option<DateTime<Utc>>,
}

/// A YouTube client for one tick.
pub struct YouTube {
    http: reqwest::Client,
    api: Url,
    feed: Url,
    key: Secret,
    pool: PgPool,
}

impl YouTube {
    /// A client, if an API key is configured.
    pub fn new(args: &YouTubeArgs, pool: &PgPool, timeout: Duration) -> Option<Self> {
        if !args.configured() {
            return None;
        }
        Some(Self {
            http: super::api::http_client(timeout)?,
            api: args.api_url.clone(),
            feed: args.feed_url.clone(),
            key: args.api_key.clone()?,
            pool: pool.clone(),
        })
    }

    fn endpoint(&self, name: &str) -> Result<Url, ApiError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|_| ApiError::Malformed { api: API, what: "its base URL", why: "not a base".into() })?
            .pop_if_empty()
            .push(name);
        Ok(url)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        name: &str,
        mut query: Vec<(&str, String)>,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        query.push(("key", self.key.expose().to_owned()));
        get_json(&self.http, API, what, &self.endpoint(name)?, &query, None, deadline).await
    }

    /// The `UC…` id of the channel with this handle, if there is one.
    pub async fn channel_id(&self, handle: &str, deadline: Instant) -> Result<Option<String>, ApiError> {
        let query = vec![("part", "id".to_owned()), ("forHandle", format!("@{}", handle.trim_start_matches('@')))];
        let answer: Items<ChannelItem> = self.call("a channel", "channels", query, deadline).await?;
        Ok(answer.items.into_iter().map(|c| clean(&c.id, 64)).find(|id| is_channel_id(id)))
    }

    /// The channel id of each channel, asking for the ones known only by
    /// handle, a few at a time (and keeping what YouTube says in
    /// `channels.platform_id`, so a lookup cut short by the deadline is done
    /// by a later probe, not again).
    async fn channel_ids(
        &self,
        channels: &[&Channel],
        deadline: Instant,
    ) -> Result<Vec<(i64, Result<String, String>)>, sqlx::Error> {
        use futures::TryStreamExt;
        futures::stream::iter(channels.iter().copied())
            .map(|c| async move {
                let id = match (&c.platform_id, &c.platform_handle) {
                    (Some(id), _) if is_channel_id(id) => Ok(id.clone()),
                    (_, Some(handle)) => match self.channel_id(handle, deadline).await {
                        Ok(Some(id)) => {
                            crate::channels::set_platform_id(&self.pool, c.id, Some(&id)).await?;
                            Ok(id)
                        }
                        Ok(None) => Err(format!("YouTube has no channel with the handle @{handle}")),
                        Err(e) => Err(format!("YouTube: {}", colony::error_chain(&e))),
                    },
                    _ => Err("a YouTube channel with neither a handle nor a channel id".to_owned()),
                };
                Ok::<_, sqlx::Error>((c.id, id))
            })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// The newest video ids of a channel's feed.
    async fn recent(&self, channel_id: &str, deadline: Instant) -> Result<Vec<String>, ApiError> {
        let what = "a channel's feed";
        let send = self.http.get(self.feed.clone()).query(&[("channel_id", channel_id)]).send();
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = match tokio::time::timeout(left, send).await {
            Err(_) => return Err(ApiError::Deadline { api: FEED, what }),
            Ok(Err(source)) => return Err(ApiError::Http { api: FEED, what, source }),
            Ok(Ok(a)) => a,
        };
        let status = answer.status().as_u16();
        let body = read_capped(answer, FEED, what).await?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status { api: FEED, what, status, message: "no feed".into() });
        }
        feed_video_ids(&body, RECENT).map_err(|why| ApiError::Malformed { api: FEED, what, why })
    }

    /// `videos.list` for `ids`, 50 a call.
    async fn videos(&self, ids: &[String], deadline: Instant) -> Result<Vec<Video>, ApiError> {
        let mut videos = Vec::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            let query = vec![
                ("part", "liveStreamingDetails,snippet".to_owned()),
                ("id", batch.join(",")),
                ("maxResults", BATCH.to_string()),
            ];
            let answer: Items<Video> = self.call("videos", "videos", query, deadline).await?;
            videos.extend(answer.items);
        }
        Ok(videos)
    }

    /// Each channel's live broadcast, or why it could not be told.
    pub async fn live(
        &self,
        channels: &[&Channel],
        deadline: Instant,
    ) -> Result<Vec<(i64, Result<Option<StreamInfo>, String>)>, sqlx::Error> {
        let ids = self.channel_ids(channels, deadline).await?;
        let feeds: Vec<(i64, Listed)> = futures::stream::iter(ids)
            .map(|(channel, id)| async move {
                let listed = match id {
                    Ok(id) => match self.recent(&id, deadline).await {
                        Ok(videos) => Ok((id, videos)),
                        Err(e) => Err(format!("YouTube: {}", colony::error_chain(&e))),
                    },
                    Err(e) => Err(e),
                };
                (channel, listed)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut wanted: Vec<String> =
            feeds.iter().filter_map(|(_, f)| f.as_ref().ok()).flat_map(|(_, v)| v.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let live = match self.videos(&wanted, deadline).await {
            Ok(videos) => {
                Ok(videos.into_iter().filter_map(live_broadcast).collect::<HashMap<String, (String, StreamInfo)>>())
            }
            Err(e) => Err(format!("YouTube: {}", colony::error_chain(&e))),
        };
        Ok(feeds
            .into_iter()
            .map(|(channel, listed)| {
                let verdict = listed.and_then(|(id, videos)| {
                    let live = live.as_ref().map_err(Clone::clone)?;
                    Ok(videos
                        .iter()
                        .find_map(|v| live.get(v).filter(|(owner, _)| *owner == id))
                        .map(|(_, s)| s.clone()))
                });
                (channel, verdict)
            })
            .collect())
    }

    /// The channel's past broadcasts, newest first, through its uploads
    /// playlist (50 a page): those published after `since`, at most `limit`.
    pub async fn past_broadcasts(
        &self,
        channel_id: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
        deadline: Instant,
        mut listed: impl FnMut(usize),
    ) -> Result<Vec<PastBroadcast>, ApiError> {
        let query = vec![("part", "contentDetails".to_owned()), ("id", channel_id.to_owned())];
        let channels: Items<ChannelItem> = self.call("a channel", "channels", query, deadline).await?;
        let uploads = channels
            .items
            .into_iter()
            .find_map(|c| c.content_details.and_then(|d| d.related_playlists.get("uploads").cloned()))
            .ok_or_else(|| ApiError::Malformed {
                api: API,
                what: "a channel",
                why: "it names no uploads playlist".into(),
            })?;
        let mut found: Vec<PastBroadcast> = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query = vec![
                ("part", "contentDetails".to_owned()),
                ("playlistId", clean(&uploads, 64)),
                ("maxResults", BATCH.to_string()),
            ];
            if let Some(p) = &page {
                query.push(("pageToken", p.clone()));
            }
            let items: Items<PlaylistItem> = self.call("uploads", "playlistItems", query, deadline).await?;
            let mut older = false;
            let ids: Vec<String> = items
                .items
                .iter()
                .filter(|i| {
                    let old = since.is_some_and(|s| i.content_details.published_at.is_some_and(|p| p < s));
                    older |= old;
                    !old
                })
                .map(|i| clean(&i.content_details.video_id, 32))
                .collect();
            let before = found.len();
            for v in self.videos(&ids, deadline).await? {
                let (Some(snippet), Some(live)) = (&v.snippet, &v.live) else { continue };
                if live.actual_end.is_none() || found.len() >= limit || found.iter().any(|f| f.video_id == v.id) {
                    continue;
                }
                found.push(PastBroadcast {
                    video_id: clean(&v.id, 32),
                    title: clean(&snippet.title, 300),
                    started_at: live.actual_start,
                });
            }
            listed(found.len());
            let next = items.next_page_token.filter(|t| !t.is_empty() && Some(t) != page.as_ref());
            match next {
                Some(t) if !older && found.len() < limit && (found.len() > before || !items.items.is_empty()) => {
                    page = Some(t)
                }
                _ => return Ok(found),
            }
        }
    }
}

/// A channel's `UC…` id and its feed's newest videos, or why they are unknown.
type Listed = Result<(String, Vec<String>), String>;

/// A `UC…` channel id.
pub fn is_channel_id(id: &str) -> bool {
    id.len() == 24 && id.starts_with("UC") && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A video that is live now: `(its channel, its broadcast)`.
fn live_broadcast(v: Video) -> Option<(String, (String, StreamInfo))> {
    let snippet = v.snippet?;
    let live = v.live?;
    let started_at = live.actual_start?;
    if snippet.broadcast != "live" || live.actual_end.is_some() {
        return None;
    }
    let id = clean(&v.id, 32);
    let info = StreamInfo { id: id.clone(), title: clean(&snippet.title, 300), category: String::new(), started_at };
    Some((id, (clean(&snippet.channel_id, 64), info)))
}

/// The first `n` video ids of an Atom feed (`<entry><yt:videoId>`), newest
/// first as YouTube lists them. Anything that is not such a feed is an error.
pub fn feed_video_ids(body: &[u8], n: usize) -> Result<Vec<String>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut ids = Vec::new();
    let (mut in_entry, mut saw_feed) = (false, false);
    // The text of the `<yt:videoId>` being read; None outside one.
    let mut id: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                "feed" => saw_feed = true,
                "entry" => in_entry = true,
                "videoId" if in_entry => id = Some(String::new()),
                _ => {}
            },
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                "entry" => in_entry = false,
                "videoId" => {
                    let text = id.take().unwrap_or_default();
                    let text = text.trim();
                    let ok = (1..=32).contains(&text.len())
                        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if ok && !ids.iter().any(|seen| seen == text) {
                        ids.push(text.to_owned());
                        if ids.len() >= n {
                            return Ok(ids);
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::Text(t)) => {
                if let Some(id) = id.as_mut().filter(|id| id.len() <= 64) {
                    id.push_str(t.as_ref());
                }
            }
            // An entity in an id: not an id.
            Ok(Event::GeneralRef(_)) => {
                if let Some(id) = id.as_mut() {
                    id.push('&');
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("not XML: {e}")),
        }
        buf.clear();
    }
    if !saw_feed {
        return Err("not an Atom feed".into());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">
 <yt:channelId>UCabcdefghijklmnopqrstuv</yt:channelId>
 <entry><id>yt:video:AAAAAAAAAAA</id><yt:videoId>AAAAAAAAAAA</yt:videoId><published>2026-11-30T10:00:00+00:00</published></entry>
 <entry><yt:videoId>BBBBBBBBBBB</yt:videoId></entry>
 <entry><yt:videoId>bad id &amp; more</yt:videoId></entry>
 <entry><yt:videoId>CCCCCCCCCCC</yt:videoId></entry>
 <entry><yt:videoId>DDDDDDDDDDD</yt:videoId></entry>
</feed>"#;

    #[test]
    fn a_feed_gives_its_newest_video_ids_and_junk_is_refused() {
        assert_eq!(feed_video_ids(FEED.as_bytes(), 3).unwrap(), ["AAAAAAAAAAA", "BBBBBBBBBBB", "CCCCCCCCCCC"]);
        assert_eq!(feed_video_ids(FEED.as_bytes(), 10).unwrap().len(), 4);
        assert!(feed_video_ids(b"<html><body>consent</body></html>", 3).is_err());
        assert!(feed_video_ids(b"\xff\xfe\x00<<<", 3).is_err());
    }

    #[test]
    fn only_a_started_unended_live_video_is_a_broadcast() {
        let videos: Items<Video> = serde_json::from_str(
            r#"{"items":[
              {"id":"live1","snippet":{"channelId":"UC1","title":"On air","liveBroadcastContent":"live"},
               "liveStreamingDetails":{"actualStartTime":"2026-11-30T10:00:00Z","concurrentViewers":"5"}},
              {"id":"soon","snippet":{"channelId":"UC1","title":"Soon","liveBroadcastContent":"upcoming"},
               "liveStreamingDetails":{"scheduledStartTime":"2026-12-01T10:00:00Z"}},
              {"id":"past","snippet":{"channelId":"UC1","title":"Was","liveBroadcastContent":"none"},
               "liveStreamingDetails":{"actualStartTime":"2026-11-29T10:00:00Z","actualEndTime":"2026-11-29T12:00:00Z"}},
              {"id":"upload","snippet":{"channelId":"UC1","title":"Clip","liveBroadcastContent":"none"}}
            ]}"#,
        )
        .unwrap();
        let live: Vec<_> = videos.items.into_iter().filter_map(live_broadcast).collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, "live1");
        assert_eq!(live[0].1.0, "UC1");
        assert_eq!(live[0].1.1.title, "On air");
    }

    #[test]
    fn channel_ids_are_uc_and_24_characters() {
        assert!(is_channel_id("UCabcdefghijklmnopqrstuv"));
        assert!(!is_channel_id("UCshort"));
        assert!(!is_channel_id("XXabcdefghijklmnopqrstuv"));
    }
}
