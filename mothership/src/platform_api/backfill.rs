//! `backfill --from-platform`: list a channel's past broadcasts on its
//! platform and queue a download of each.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::admin::AdminError;
use colony::platform::Platform;
use colony::queue::{JobArgs, NewJob, Queue, VodDownloadArgs};
use colony::resolver::ProfileName;

/// What `backfill --from-platform` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformBackfill {
    /// Past broadcasts the platform listed (within --since and --limit).
    pub listed: u64,
    /// New downloads queued (the rest were queued or done before).
    pub created: u64,
    /// Of those listed, the ones that were also recorded live.
    pub recorded_live: u64,
}

/// `backfill --channel NAME --from-platform`: list the channel's past
/// broadcasts on its platform and queue one `vod_download` each, keyed by
/// the platform's video id, so running it again queues nothing new. Each
/// is resolved with the platform's VOD resolver profile (`twitch_vod`:
/// `COLONY_RESOLVER_TWITCH_VOD`, yt-dlp by default) on the harvest cell.
pub async fn queue_past_broadcasts(
    pool: &PgPool,
    channel: &str,
    detectors: &crate::platform_api::Detectors,
    since: Option<DateTime<Utc>>,
    limit: usize,
    mut listed: impl FnMut(usize),
    mut progress: impl FnMut(u64),
) -> Result<PlatformBackfill, AdminError> {
    use crate::platform_api::api::{ApiError, clean};
    type PlatformRow = (i64, Option<String>, Option<String>, Option<String>);
    let row: Option<PlatformRow> =
        sqlx::query_as("SELECT id, platform, platform_handle, platform_id FROM channels WHERE login = $1")
            .bind(channel)
            .fetch_optional(pool)
            .await?;
    let Some((channel_id, platform, handle, mut platform_id)) = row else {
        return Err(AdminError::NoChannel(channel.to_owned()));
    };
    let platform: Platform = match platform.as_deref().map(str::parse) {
        Some(Ok(p)) => p,
        _ => {
            return Err(AdminError::Invalid(format!(
                "channel {channel} is not on a platform; --from-platform needs a Twitch or YouTube channel"
            )));
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    let api_error = |e: ApiError| AdminError::Invalid(colony::error_chain(&e));
    let handle = handle.unwrap_or_default();
    // The platform's id of the channel, asked for once and kept.
    let known_id = platform_id.clone();
    let broadcasts: Vec<PastBroadcast> = match platform {
        Platform::Twitch => {
            let Some(helix) = &detectors.twitch else {
                return Err(AdminError::Invalid(
                    "--from-platform asks Helix: set COLONY_TWITCH_CLIENT_ID and COLONY_TWITCH_CLIENT_SECRET".into(),
                ));
            };
            if platform_id.is_none() {
                let id = helix.user_id(&handle, deadline).await.map_err(api_error)?;
                let Some(id) = id else {
                    return Err(AdminError::Invalid(format!("Twitch has no channel named '{handle}'")));
                };
                platform_id = Some(id);
            }
            let user_id = platform_id.clone().unwrap_or_default();
            let videos = helix.archives(&user_id, since, limit, deadline, &mut listed).await.map_err(api_error)?;
            videos
                .into_iter()
                .map(|v| {
                    let id = clean(&v.id, 64);
                    PastBroadcast {
                        url: format!("https://www.twitch.tv/videos/{id}"),
                        id,
                        stream_id: v.stream_id.as_deref().map(|s| clean(s, 64)),
                        title: clean(&v.title, 300),
                    }
                })
                .collect()
        }
        Platform::YouTube => {
            let Some(youtube) = &detectors.youtube else {
                return Err(AdminError::Invalid(
                    "--from-platform asks the YouTube Data API: set COLONY_YOUTUBE_API_KEY".into(),
                ));
            };
            if !platform_id.as_deref().is_some_and(crate::platform_api::youtube::is_channel_id) {
                let id = youtube.channel_id(&handle, deadline).await.map_err(api_error)?;
                let Some(id) = id else {
                    return Err(AdminError::Invalid(format!("YouTube has no channel with the handle @{handle}")));
                };
                platform_id = Some(id);
            }
            let id = platform_id.clone().unwrap_or_default();
            let videos = youtube.past_broadcasts(&id, since, limit, deadline, &mut listed).await.map_err(api_error)?;
            // A YouTube broadcast is its video: a live recording carries the video id.
            videos
                .into_iter()
                .map(|v| PastBroadcast {
                    url: format!("https://www.youtube.com/watch?v={}", v.video_id),
                    stream_id: Some(v.video_id.clone()),
                    id: v.video_id,
                    title: v.title,
                })
                .collect()
        }
        Platform::Kick => {
            return Err(AdminError::Invalid(format!(
                "Kick's public API lists no past broadcasts; queue {channel}'s VODs with --urls-from"
            )));
        }
    };
    if platform_id != known_id {
        crate::channels::set_platform_id(pool, channel_id, platform_id.as_deref()).await?;
    }
    let stream_ids: Vec<String> = broadcasts.iter().filter_map(|v| v.stream_id.clone()).collect();
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_id, id FROM recordings WHERE channel_id = $1 AND source = 'live' AND stream_id = ANY($2)",
    )
    .bind(channel_id)
    .bind(&stream_ids)
    .fetch_all(pool)
    .await?;
    let live: std::collections::HashMap<String, i64> = live.into_iter().collect();
    let resolver = ProfileName::vod(platform);
    let jobs: Vec<NewJob> = broadcasts
        .iter()
        .map(|v| {
            JobArgs::VodDownload(VodDownloadArgs {
                url: v.url.clone(),
                channel_id: Some(channel_id),
                channel: None,
                resolver: Some(resolver.clone()),
                stream_id: v.stream_id.clone(),
                title: Some(v.title.clone()),
                live_recording_id: v.stream_id.as_ref().and_then(|s| live.get(s).copied()),
            })
            .job()
            // Keyed by the platform's video id rather than the channel and
            // URL (`JobArgs::unique_key`): a video keeps its id when its
            // page URL changes, and rows queued by earlier builds carry it.
            .unique_key(format!("vod_download:{platform}:{}", v.id))
        })
        .collect();
    let queue = Queue::new(pool.clone());
    let (mut created, mut done) = (0, 0);
    for batch in jobs.chunks(500) {
        created += queue.enqueue_many(batch).await?;
        done += batch.len() as u64;
        progress(done);
    }
    let recorded_live =
        broadcasts.iter().filter(|v| v.stream_id.as_ref().is_some_and(|s| live.contains_key(s))).count();
    Ok(PlatformBackfill { listed: broadcasts.len() as u64, created, recorded_live: recorded_live as u64 })
}

/// A past broadcast as `backfill --from-platform` queues it.
struct PastBroadcast {
    /// The platform's video id: the download's unique key.
    id: String,
    /// The live broadcast it was, to link a live recording of it.
    stream_id: Option<String>,
    title: String,
    url: String,
}
