//! The operator's commands that are not a tick: channels, jobs, bulk
//! backfill, and the read-only views behind `status`, `cells` and
//! `decisions`. Input is validated here, before anything is written.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

use colony::channel::Login;
use colony::config::{redact_source_url, redact_text};
use colony::exit::{Classify, ErrorClass};
use colony::platform::{self, Platform, PlatformChannel, PlatformError};
use colony::queue::{JobArgs, JobKind, NewJob, Queue, QueueError, VodDownloadArgs};
use colony::resolver::ProfileName;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The operator's input was wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("no channel named '{0}'; `mothership channel list` shows them")]
    NoChannel(String),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("job queue error")]
    Queue(#[from] QueueError),
}

/// A source URL: absolute http(s).
pub fn parse_source_url(raw: &str) -> Result<Url, AdminError> {
    let shown = || redact_source_url(raw.trim());
    let url =
        Url::parse(raw.trim()).map_err(|e| AdminError::Invalid(format!("'{}' is not a valid URL ({e})", shown())))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(AdminError::Invalid(format!("'{}' is not an http(s) URL with a host", shown())));
    }
    Ok(url)
}

/// `--resolver NAME`: a resolver profile this host defines. A command is
/// refused with how to make it a profile: rows name profiles, never carry
/// commands (any holder of a database URL could write one).
pub fn parse_resolver(raw: &str) -> Result<String, AdminError> {
    let raw = raw.trim();
    let profile = ProfileName::parse(raw).map_err(|_| {
        let shown = colony::resolver::redact_template(raw);
        AdminError::Invalid(format!(
            "--resolver takes a resolver profile's name, not a command: define the command on this host and on \
             the hosts that run cells as COLONY_RESOLVER_<NAME>='{shown}', then give --resolver <name> \
             (a-z, 0-9 and _)"
        ))
    })?;
    if colony::resolver::template(&profile).is_none() {
        return Err(AdminError::Invalid(format!(
            "resolver profile '{profile}' is not defined here: set {} to its command on this host (which probes \
             the channel) and on the hosts that run its observers",
            profile.variable()
        )));
    }
    Ok(profile.to_string())
}

/// `--allow-host` values: host names or `*.suffix` patterns.
fn parse_allowed_hosts(raw: &[String]) -> Result<Vec<String>, AdminError> {
    raw.iter()
        .filter(|h| !h.trim().is_empty())
        .map(|h| h.parse::<colony::hls::HostPattern>().map(|p| p.to_string()).map_err(AdminError::Invalid))
        .collect()
}

/// A channel to add, parsed.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub login: Login,
    pub source_url: Url,
    /// The platform channel it is, when the URL is a platform page or
    /// `--platform` named one.
    pub platform: Option<PlatformChannel>,
    pub name: Option<String>,
    pub resolver: Option<String>,
    pub variant: String,
    /// Hosts besides the source's own its playlists may name (CDNs).
    pub allowed_hosts: Vec<String>,
    /// Record the chat beside the video (Twitch channels).
    pub chat: bool,
}

impl NewChannel {
    pub fn parse(
        login: &str,
        source_url: &str,
        name: Option<String>,
        resolver: Option<String>,
        variant: Option<String>,
        allowed_hosts: &[String],
    ) -> Result<Self, AdminError> {
        let login = Login::parse(login).map_err(AdminError::Invalid)?;
        let source_url = parse_source_url(source_url)?;
        let resolver = resolver.map(|r| parse_resolver(&r)).transpose()?;
        let variant = variant.unwrap_or_else(|| "best".into());
        variant.parse::<colony::hls::VariantChoice>().map_err(AdminError::Invalid)?;
        let allowed_hosts = parse_allowed_hosts(allowed_hosts)?;
        let platform = platform::recognise(&source_url).map_err(|e| AdminError::Invalid(e.to_string()))?;
        // A platform channel's segments come from its CDNs.
        let mut allowed_hosts = allowed_hosts;
        for host in platform.iter().flat_map(|p| p.platform.cdn_hosts()) {
            if !allowed_hosts.iter().any(|h| h == host) {
                allowed_hosts.push((*host).to_owned());
            }
        }
        Ok(Self { login, source_url, platform, name, resolver, variant, allowed_hosts, chat: true })
    }

    /// `channel add [URL] [--login NAME] [--source-url URL] [--platform P]`:
    /// a platform page names the channel (its handle is the default login),
    /// `--platform P --login NAME` names it explicitly, and any other URL is
    /// a plain HLS source, which needs `--login`.
    pub fn from_cli(
        url: Option<&str>,
        login: Option<&str>,
        platform: Option<&str>,
        extra: ChannelExtras,
    ) -> Result<Self, AdminError> {
        let invalid = |e: PlatformError| AdminError::Invalid(e.to_string());
        let ChannelExtras { name, resolver, variant, allowed_hosts, no_chat } = extra;
        let (source_url, login) = match (platform, url, login) {
            (Some(p), None, Some(handle)) => {
                let p: Platform = p.parse().map_err(invalid)?;
                let handle = platform::handle(p, handle).map_err(invalid)?;
                let channel = PlatformChannel { platform: p, handle };
                (channel.page_url(), channel.suggested_login())
            }
            (Some(_), Some(_), _) => {
                return Err(AdminError::Invalid(
                    "give either a channel URL or --platform with --login, not both".into(),
                ));
            }
            (Some(p), None, None) => {
                return Err(AdminError::Invalid(format!(
                    "--platform {p} needs --login NAME (the channel's name there)"
                )));
            }
            (None, Some(url), login) => {
                let parsed = parse_source_url(url)?;
                match (platform::recognise(&parsed).map_err(invalid)?, login) {
                    (Some(_), Some(login)) => (url.to_owned(), login.to_owned()),
                    (Some(channel), None) => (url.to_owned(), channel.suggested_login()),
                    (None, Some(login)) => (url.to_owned(), login.to_owned()),
                    (None, None) => {
                        return Err(AdminError::Invalid(format!(
                            "{} is not a Twitch, YouTube or Kick channel page; an HLS source needs --login NAME",
                            redact_source_url(url)
                        )));
                    }
                }
            }
            (None, None, _) => {
                return Err(AdminError::Invalid(
                    "give the channel's URL (a Twitch, YouTube or Kick page, or an HLS playlist), or --platform with --login"
                        .into(),
                ));
            }
        };
        let mut new = Self::parse(&login, &source_url, name, resolver, variant, &allowed_hosts)?;
        new.chat = !no_chat;
        Ok(new)
    }
}

/// What `channel add` takes besides the channel itself.
#[derive(Debug, Clone, Default)]
pub struct ChannelExtras {
    pub name: Option<String>,
    pub resolver: Option<String>,
    pub variant: Option<String>,
    pub allowed_hosts: Vec<String>,
    /// `--no-chat`: record the video only.
    pub no_chat: bool,
}

pub async fn add_channel(pool: &PgPool, c: &NewChannel) -> Result<i64, AdminError> {
    let kind = match (&c.platform, &c.resolver) {
        (Some(_), _) => "platform",
        (None, Some(_)) => "command",
        (None, None) => "hls",
    };
    let (handle, platform_id) = c.platform.as_ref().map(PlatformChannel::stored).unwrap_or_default();
    let taken: Option<String> = match &c.platform {
        Some(p) => {
            sqlx::query_scalar(
                "SELECT login FROM channels WHERE platform = $1 AND (platform_handle = $2 OR platform_id = $3)",
            )
            .bind(p.platform.as_str())
            .bind(&handle)
            .bind(&platform_id)
            .fetch_optional(pool)
            .await?
        }
        None => None,
    };
    if let Some(login) = taken {
        return Err(AdminError::Invalid(format!("that channel is already in the archive as '{login}'")));
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO channels (login, display_name, source_kind, source_url, resolver_profile, variant, allowed_hosts,
                               platform, platform_handle, platform_id, chat)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (login) DO NOTHING RETURNING id",
    )
    .bind(c.login.as_str())
    .bind(c.name.clone().unwrap_or_else(|| c.login.to_string()))
    .bind(kind)
    .bind(c.source_url.as_str())
    .bind(&c.resolver)
    .bind(&c.variant)
    .bind(&c.allowed_hosts)
    .bind(c.platform.as_ref().map(|p| p.platform.as_str()))
    .bind(&handle)
    .bind(&platform_id)
    .bind(c.chat)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| AdminError::Invalid(format!("a channel named '{}' already exists; use `channel update`", c.login)))
}

/// Changes to a channel; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    pub name: Option<String>,
    pub source_url: Option<String>,
    /// A resolver profile's name; Some("") clears it (the source becomes a direct HLS URL).
    pub resolver: Option<String>,
    pub variant: Option<String>,
    /// Replaces the allowed hosts when given; `[""]` clears them.
    pub allowed_hosts: Option<Vec<String>>,
    /// Turn chat recording on or off.
    pub chat: Option<bool>,
}

pub async fn update_channel(pool: &PgPool, login: &str, u: &ChannelUpdate) -> Result<(), AdminError> {
    let login = Login::parse(login).map_err(AdminError::Invalid)?;
    let url = u.source_url.as_deref().map(parse_source_url).transpose()?;
    let resolver = match u.resolver.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(r) => Some(Some(parse_resolver(r)?)),
    };
    if let Some(v) = &u.variant {
        v.parse::<colony::hls::VariantChoice>().map_err(AdminError::Invalid)?;
    }
    let hosts = u.allowed_hosts.as_deref().map(parse_allowed_hosts).transpose()?;
    let done = sqlx::query(
        "UPDATE channels SET
            display_name = COALESCE($2, display_name),
            source_url = COALESCE($3, source_url),
            resolver_profile = CASE WHEN $4 THEN $5 ELSE resolver_profile END,
            source_kind = CASE WHEN $4 AND source_kind <> 'platform'
                               THEN (CASE WHEN $5 IS NULL THEN 'hls' ELSE 'command' END) ELSE source_kind END,
            variant = COALESCE($6, variant),
            allowed_hosts = COALESCE($7, allowed_hosts),
            chat = COALESCE($8, chat),
            probed_at = NULL, updated_at = now()
          WHERE login = $1",
    )
    .bind(login.as_str())
    .bind(&u.name)
    .bind(url.as_ref().map(Url::as_str))
    .bind(resolver.is_some())
    .bind(resolver.flatten())
    .bind(&u.variant)
    .bind(&hosts)
    .bind(u.chat)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AdminError::NoChannel(login.to_string()));
    }
    Ok(())
}

pub async fn set_enabled(pool: &PgPool, login: &str, enabled: bool) -> Result<(), AdminError> {
    let done = sqlx::query("UPDATE channels SET enabled = $2, probed_at = NULL, updated_at = now() WHERE login = $1")
        .bind(login)
        .bind(enabled)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AdminError::NoChannel(login.to_owned()));
    }
    Ok(())
}

/// Remove a channel that has never been recorded. Recordings are never
/// deleted by this command: a channel with any is refused (disable it).
pub async fn remove_channel(pool: &PgPool, login: &str) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM channels WHERE login = $1 FOR UPDATE")
        .bind(login)
        .fetch_optional(&mut *tx)
        .await?;
    let id = id.ok_or_else(|| AdminError::NoChannel(login.to_owned()))?;
    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE channel_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if recordings > 0 {
        return Err(AdminError::Invalid(format!(
            "channel '{login}' has {recordings} recording(s), which are kept; use `mothership channel disable {login}` to stop recording it"
        )));
    }
    sqlx::query("DELETE FROM channels WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A channel as `channel list` and `status` show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChannelStatus {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub source_kind: String,
    pub source_url: String,
    /// The resolver profile it names (a name: the command lives on each host).
    pub resolver_profile: Option<String>,
    /// The streaming platform, for a platform channel.
    pub platform: Option<String>,
    /// What the platform says the broadcast is, while it is live.
    pub stream_title: Option<String>,
    pub stream_category: Option<String>,
    pub enabled: bool,
    pub live: bool,
    pub probed_at: Option<DateTime<Utc>>,
    pub probe_error: Option<String>,
    pub observer: Option<Uuid>,
    pub observer_state: Option<String>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub recording: Option<i64>,
    pub recording_state: Option<String>,
    pub segments: Option<i64>,
    /// Observer starts that failed in a row, and when the next one is allowed.
    pub start_failures: i32,
    pub start_retry_at: Option<DateTime<Utc>>,
}

pub async fn channel_status(pool: &PgPool) -> Result<Vec<ChannelStatus>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.login, c.display_name, c.source_kind, c.source_url, c.resolver_profile, c.platform,
                c.stream_title, c.stream_category, c.enabled, c.live,
                c.probed_at, c.probe_error, c.start_failures, c.start_retry_at,
                o.id AS observer, o.state::text AS observer_state, o.last_heartbeat,
                r.id AS recording, r.state::text AS recording_state, r.segment_count AS segments
           FROM channels c
           LEFT JOIN LATERAL (
                SELECT id, state, last_heartbeat FROM cells
                 WHERE channel_id = c.id AND kind = 'observer' AND state IN ('starting', 'running', 'stopping')
                 ORDER BY started_at DESC LIMIT 1) o ON true
           LEFT JOIN LATERAL (
                SELECT id, state, segment_count FROM recordings
                 WHERE channel_id = c.id AND source = 'live' ORDER BY id DESC LIMIT 1) r ON true
          ORDER BY c.login",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|mut row: ChannelStatus| {
        row.source_url = redact_source_url(&row.source_url);
        row.probe_error = row.probe_error.as_deref().map(redact_text);
        row
    })
    .collect())
}

/// A cell row as `cells` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CellStatus {
    pub id: Uuid,
    pub kind: String,
    pub backend: String,
    pub backend_ref: Option<String>,
    pub state: String,
    pub channel: Option<String>,
    pub recording_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub exited_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub host: Option<String>,
    pub running_jobs: i64,
    pub detail: serde_json::Value,
}

/// Active cells, or with `all` also the last `limit` finished ones.
pub async fn cells(pool: &PgPool, all: bool, limit: i64) -> Result<Vec<CellStatus>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT x.id, x.kind::text AS kind, x.backend, x.backend_ref, x.state::text AS state, c.login AS channel,
                x.recording_id, x.started_at, x.last_heartbeat, x.exited_at, x.exit_code, x.host,
                (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.attempted_by = x.id::text) AS running_jobs,
                x.detail
           FROM cells x LEFT JOIN channels c ON c.id = x.channel_id
          WHERE x.state IN ('starting', 'running', 'stopping') OR $1
          ORDER BY (x.state IN ('starting', 'running', 'stopping')) DESC, x.started_at DESC
          LIMIT $2",
    )
    .bind(all)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Decision {
    pub id: i64,
    pub tick_id: Uuid,
    pub at: DateTime<Utc>,
    pub action: String,
    pub subject: String,
    pub reason: String,
    pub outcome: String,
    pub error: Option<String>,
}

pub async fn decisions(pool: &PgPool, limit: i64, failed_only: bool) -> Result<Vec<Decision>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT id, tick_id, at, action, subject, reason, outcome, error FROM decisions
          WHERE outcome = 'failed' OR NOT $2 ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(failed_only)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub attempted_by: Option<String>,
    pub last_error: Option<String>,
    pub args: serde_json::Value,
    pub progress: Option<serde_json::Value>,
}

pub async fn jobs(
    pool: &PgPool,
    state: Option<&str>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, AdminError> {
    const STATES: &[&str] = &["available", "running", "retryable", "succeeded", "dead", "cancelled"];
    if let Some(s) = state.filter(|s| !STATES.contains(s)) {
        return Err(AdminError::Invalid(format!("'{s}' is not a job state; use one of {}", STATES.join(", "))));
    }
    Ok(sqlx::query_as(
        "SELECT id, kind, state::text AS state, attempt, max_attempts, run_at, attempted_by, last_error, args, progress
           FROM jobs
          WHERE ($1::text IS NULL OR state::text = $1) AND ($2::text IS NULL OR kind = $2)
            AND ($1::text IS NOT NULL OR state <> 'succeeded')
          ORDER BY id DESC LIMIT $3",
    )
    .bind(state)
    .bind(kind.map(job_kind))
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|mut row: JobRow| {
        redact_json(&mut row.args);
        row.last_error = row.last_error.as_deref().map(redact_text);
        row
    })
    .collect())
}

/// Mask every URL's query in a job's arguments (a VOD URL may carry a token).
fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains("://") => *s = redact_text(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// `vod-download` and `vod_download` both name the same kind.
pub fn job_kind(raw: &str) -> String {
    raw.trim().replace('-', "_")
}

async fn channel_id(pool: &PgPool, login: &str) -> Result<i64, AdminError> {
    sqlx::query_scalar("SELECT id FROM channels WHERE login = $1")
        .bind(login)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| AdminError::NoChannel(login.to_owned()))
}

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
    .unique_key(format!("vod_download:{channel_id}:{url}"))
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
pub async fn backfill_from_platform(
    pool: &PgPool,
    channel: &str,
    detectors: &crate::platform::Detectors,
    since: Option<DateTime<Utc>>,
    limit: usize,
    mut listed: impl FnMut(usize),
    mut progress: impl FnMut(u64),
) -> Result<PlatformBackfill, AdminError> {
    use crate::platform::api::{ApiError, clean};
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
            if !platform_id.as_deref().is_some_and(crate::platform::youtube::is_channel_id) {
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
        sqlx::query("UPDATE channels SET platform_id = $2 WHERE id = $1")
            .bind(channel_id)
            .bind(&platform_id)
            .execute(pool)
            .await?;
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
    let resolver = platform.vod_profile();
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

/// Operator mistakes exit 2 with their one line; the rest are failures.
impl Classify for AdminError {
    fn class(&self) -> ErrorClass {
        match self {
            AdminError::Invalid(_) | AdminError::NoChannel(_) => ErrorClass::Config,
            AdminError::Db(_) => ErrorClass::Transient,
            AdminError::Queue(e) => e.class(),
        }
    }
}
