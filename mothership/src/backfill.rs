//! Queueing downloads by hand: `job enqueue` and `backfill --urls-from`.
//! (`backfill --from-platform` asks the platform: [`crate::platform_api::backfill`].)

use sqlx::PgPool;
use url::Url;

use crate::admin::{AdminError, channel_id};
use crate::channels::parse_source_url;
use colony::queue::{JobArgs, JobKind, NewJob, Queue, VodDownloadArgs};

/// A VOD download for `channel`; the unique key makes a repeat a no-op.
pub fn vod_job(channel_id: i64, url: &Url) -> NewJob {
    JobArgs::VodDownload(VodDownloadArgs {
        url: url.as_str().to_owned(),
        channel_id: Some(channel_id),
        channel: None,
        resolver: None,
        stream_id: None,
        title: None,
        live_recording_id: None,
    })
    .job()
}

/// `job enqueue KIND`: vod-download takes --url and --channel; other kinds
/// take their arguments as JSON, checked against the kind before they are
/// queued.
pub async fn enqueue(
    pool: &PgPool,
    kind: &str,
    url: Option<&str>,
    channel: Option<&str>,
    args: Option<&str>,
) -> Result<colony::queue::Enqueued, AdminError> {
    let kind: JobKind = kind.parse().map_err(|e: colony::queue::UnknownKind| AdminError::Invalid(e.to_string()))?;
    let job = if kind == JobKind::VodDownload {
        let (Some(url), Some(channel)) = (url, channel) else {
            return Err(AdminError::Invalid("vod-download needs --url URL and --channel NAME".into()));
        };
        let url = parse_source_url(url)?;
        vod_job(channel_id(pool, channel).await?, &url)
    } else {
        let raw = args
            .ok_or_else(|| AdminError::Invalid(format!("{kind} needs --args JSON, e.g. '{{\"recording_id\": 7}}'")))?;
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| AdminError::Invalid(format!("--args is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(AdminError::Invalid("--args must be a JSON object".into()));
        }
        JobArgs::parse(kind.as_str(), &value).map_err(|e| AdminError::Invalid(format!("--args: {e}")))?;
        NewJob::new(kind.as_str(), value)
    };
    Ok(Queue::new(pool.clone()).enqueue(&job).await?)
}

/// Parse a backfill file: one URL per line; blank lines and `#` comments are
/// skipped; duplicates are dropped. Any bad line refuses the whole file.
pub fn parse_url_list(text: &str, source: &str) -> Result<Vec<Url>, AdminError> {
    let mut seen = std::collections::HashSet::new();
    let mut urls = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let url = parse_source_url(line).map_err(|e| AdminError::Invalid(format!("{source} line {}: {e}", n + 1)))?;
        if seen.insert(url.to_string()) {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// Enqueue VOD downloads in batches, calling `progress(done)` after each.
/// Returns how many were new (the rest were already queued or done).
pub async fn backfill(
    pool: &PgPool,
    channel: &str,
    urls: &[Url],
    mut progress: impl FnMut(u64),
) -> Result<u64, AdminError> {
    let channel_id = channel_id(pool, channel).await?;
    let queue = Queue::new(pool.clone());
    let mut created = 0;
    let mut done = 0;
    for batch in urls.chunks(500) {
        let jobs: Vec<NewJob> = batch.iter().map(|u| vod_job(channel_id, u)).collect();
        created += queue.enqueue_many(&jobs).await?;
        done += batch.len() as u64;
        progress(done);
    }
    Ok(created)
}
