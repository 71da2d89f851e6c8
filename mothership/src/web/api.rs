//! `/api/v1`: the pages' data as JSON. `status`, `channels`, `cells`,
//! `decisions` and `jobs` have the shapes of the CLI's `--json` output.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::data::{self, Chapter, HarvestCell, LiveChannel, Recording, Span};
use super::{Web, WebError};
use crate::views;

pub type ApiResult = Result<Json<Value>, WebError>;

fn to_json(value: impl Serialize) -> ApiResult {
    serde_json::to_value(value).map(Json).map_err(WebError::internal)
}

/// The same as `mothership status --json`.
pub async fn status(State(web): State<Web>) -> ApiResult {
    let channels = views::channel_status(&web.pool).await?;
    let cells = views::cells(&web.pool, false, 1000).await?;
    let queue = colony::queue::Queue::new(web.pool.clone()).stats().await.map_err(WebError::internal)?;
    let detection = crate::platform_api::detection(&web.platforms, &channels);
    to_json(json!({ "channels": channels, "cells": cells, "queue": queue, "detection": detection }))
}

/// What the overview page shows.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub live: Vec<LiveChannel>,
    pub harvest: Vec<HarvestCell>,
    pub queue: Vec<colony::queue::KindStats>,
    pub failed_decisions: Vec<views::Decision>,
    pub channels: usize,
}

pub async fn overview_data(web: &Web) -> Result<Overview, WebError> {
    let (live, harvest, queue, failed, channels) = tokio::try_join!(
        async { data::live_channels(&web.pool).await.map_err(WebError::from) },
        async { data::harvest_cells(&web.pool).await.map_err(WebError::from) },
        async { colony::queue::Queue::new(web.pool.clone()).stats().await.map_err(WebError::internal) },
        async { views::decisions(&web.pool, 10, true).await.map_err(WebError::from) },
        async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM channels")
                .fetch_one(&web.pool)
                .await
                .map_err(WebError::from)
        },
    )?;
    Ok(Overview { live, harvest, queue, failed_decisions: failed, channels: channels as usize })
}

pub async fn overview(State(web): State<Web>) -> ApiResult {
    to_json(overview_data(&web).await?)
}

/// The same as `mothership channel list --json`.
pub async fn channels(State(web): State<Web>) -> ApiResult {
    to_json(views::channel_status(&web.pool).await?)
}

#[derive(Debug, Serialize)]
pub struct ChannelPage {
    pub channel: views::ChannelStatus,
    pub recordings: Vec<Recording>,
}

pub async fn channel_data(web: &Web, login: &str) -> Result<ChannelPage, WebError> {
    let channel = views::channel_status(&web.pool)
        .await?
        .into_iter()
        .find(|c| c.login == login)
        .ok_or_else(|| WebError::NotFound(format!("no channel named '{login}'")))?;
    let recordings = data::recordings_of(&web.pool, login, 200).await?;
    Ok(ChannelPage { channel, recordings })
}

pub async fn channel(State(web): State<Web>, Path(login): Path<String>) -> ApiResult {
    to_json(channel_data(&web, &login).await?)
}

#[derive(Debug, Serialize)]
pub struct RecordingPage {
    pub recording: Recording,
    pub timeline: Vec<Span>,
    pub chapters: Vec<Chapter>,
    /// The playlist a player loads (this server renders it from the ledger).
    pub playlist: String,
    /// Where the thumbnails job's storyboard and the export are, once made.
    pub poster: Option<String>,
    pub storyboard_vtt: Option<String>,
    pub export: Option<String>,
    /// The recording's export job, when one was queued.
    pub export_job: Option<views::JobRow>,
    /// Chunks of chat archived beside the video.
    pub chat_chunks: usize,
}

pub async fn recording_data(web: &Web, id: i64) -> Result<RecordingPage, WebError> {
    let recording =
        data::recording(&web.pool, id).await?.ok_or_else(|| WebError::NotFound(format!("no recording {id}")))?;
    let (rows, chapters) = tokio::try_join!(data::ledger(&web.pool, id), data::chapters(&web.pool, id))?;
    let media = super::media::Extras::find(web, &recording).await;
    let export_job = data::export_job(&web.pool, id).await?;
    let chat_chunks = colony::recording::chat_ledger::chunk_count(&web.pool, id).await? as usize;
    Ok(RecordingPage {
        timeline: data::timeline(&rows),
        chapters,
        playlist: format!("/media/recordings/{id}/playlist.m3u8"),
        poster: media.poster,
        storyboard_vtt: media.storyboard_vtt,
        export: media.export,
        export_job,
        chat_chunks,
        recording,
    })
}

pub async fn recording(State(web): State<Web>, Path(id): Path<i64>) -> ApiResult {
    to_json(recording_data(&web, id).await?)
}

#[derive(Debug, Deserialize)]
pub struct JobQuery {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
}

/// The same as `mothership job list --json`.
pub async fn jobs(State(web): State<Web>, Query(q): Query<JobQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    to_json(views::jobs(&web.pool, q.state.as_deref(), q.kind.as_deref(), limit).await?)
}

/// Running jobs and their progress, once a second, for the jobs page's bars.
/// Running jobs' progress for every open event stream: one query a second
/// while any stream is open, whatever their number, and at most
/// `--max-streams` streams at once.
pub struct JobFeed {
    latest: tokio::sync::watch::Sender<Arc<Event>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl JobFeed {
    /// Start the poller; it reads only while someone listens.
    pub fn start(pool: sqlx::PgPool, max_streams: usize) -> Arc<Self> {
        let (latest, _) = tokio::sync::watch::channel(Arc::new(Event::default().comment("starting")));
        let feed = Arc::new(Self { latest, slots: Arc::new(tokio::sync::Semaphore::new(max_streams.max(1))) });
        let weak = Arc::downgrade(&feed);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(feed) = weak.upgrade() else { return };
                if feed.latest.receiver_count() == 0 {
                    continue;
                }
                let event = match views::jobs(&pool, Some("running"), None, 200).await {
                    Ok(rows) => {
                        let progress: Vec<Value> = rows
                            .iter()
                            .map(
                                |j| json!({ "id": j.id, "kind": j.kind, "attempt": j.attempt, "progress": j.progress }),
                            )
                            .collect();
                        Event::default().event("running").json_data(progress).unwrap_or_default()
                    }
                    Err(e) => Event::default().event("error").data(e.to_string()),
                };
                feed.latest.send_replace(Arc::new(event));
            }
        });
        feed
    }
}

/// `GET /api/v1/jobs/events`: running jobs' progress, as server-sent events.
pub async fn job_events(
    State(web): State<Web>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WebError> {
    let permit =
        web.jobs.slots.clone().try_acquire_owned().map_err(|_| WebError::Busy("too many open event streams"))?;
    let rx = web.jobs.latest.subscribe();
    let stream = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.changed().await.ok()?;
        let event = Event::clone(&rx.borrow_and_update());
        Some((Ok(event), (rx, permit)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize)]
pub struct CellQuery {
    pub all: Option<bool>,
}

/// The same as `mothership cells --json`.
pub async fn cells(State(web): State<Web>, Query(q): Query<CellQuery>) -> ApiResult {
    to_json(views::cells(&web.pool, q.all.unwrap_or(false), 200).await?)
}

#[derive(Debug, Deserialize)]
pub struct DecisionQuery {
    pub failed: Option<bool>,
    pub limit: Option<i64>,
}

/// The same as `mothership decisions --json`.
pub async fn decisions(State(web): State<Web>, Query(q): Query<DecisionQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    to_json(views::decisions(&web.pool, limit, q.failed.unwrap_or(false)).await?)
}

/// The token POSTs must carry, for API clients.
pub async fn csrf(State(web): State<Web>) -> ApiResult {
    to_json(json!({ "csrf": web.csrf() }))
}

#[derive(Debug, Deserialize)]
pub struct ChatQuery {
    pub from: Option<f64>,
    pub to: Option<f64>,
}

/// The most messages one chat request returns.
const CHAT_PAGE: usize = 1000;

/// A recording's chat between two offsets (seconds on its timeline), for
/// the player's chat pane: at most 1,000 messages, oldest first.
pub async fn chat(State(web): State<Web>, Path(id): Path<i64>, Query(q): Query<ChatQuery>) -> ApiResult {
    data::recording(&web.pool, id).await?.ok_or_else(|| WebError::NotFound(format!("no recording {id}")))?;
    let from = q.from.filter(|f| f.is_finite()).unwrap_or(0.0);
    let to = q.to.filter(|t| t.is_finite()).unwrap_or(f64::MAX).max(from);
    let mut messages = Vec::new();
    for chunk in colony::recording::chat_ledger::chunks_between(&web.pool, id, from, to).await? {
        let key = colony::storage::ObjectKey::parse(&chunk.object_key).map_err(WebError::internal)?;
        let body = colony::storage::get_bytes(web.store.as_ref(), &key).await.map_err(WebError::internal)?;
        let chunk = colony::chat::decode_chunk(&body).map_err(WebError::internal)?;
        messages.extend(chunk.into_iter().filter(|m| m.offset_secs >= from && m.offset_secs <= to));
        if messages.len() >= CHAT_PAGE {
            break;
        }
    }
    messages.truncate(CHAT_PAGE);
    let gaps = colony::recording::chat_ledger::gaps(&web.pool, id).await?;
    to_json(json!({ "messages": messages, "gaps": gaps }))
}
