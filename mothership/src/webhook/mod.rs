//! Webhooks: registration (`mothership webhook add|list|remove`) and the
//! events the tick turns into signed deliveries.
//!
//! Events are found by the tick, not told by the cells: a cell may die
//! before it could tell anyone, and the tables already hold every fact
//! (`recordings.started_at`/`ended_at`, `channels.live_since`/`offline_since`,
//! `jobs.finalized_at`, `cells.exited_at`). Each pass scans a window from a
//! little before the last scan's end to now, so a row that committed late
//! is still seen, and queues one `webhook` job per (hook, event) under the
//! unique key `webhook:{hook}:{event}`: a rescan of the overlap queues
//! nothing twice, and a delivery that died is never queued again. The
//! mothership signs and sends each one (`crate::delivery`); the queue's
//! retries and backoff mean a receiver that is down loses nothing and holds
//! up no one.
//!
//! This module is the only writer of the `webhooks` table; [`hooks`] holds
//! the events, secrets and signatures, and its reads.

pub mod hooks;

use chrono::{DateTime, Utc};
use colony::config::DatabaseArgs;
use colony::exit::{Classify, ErrorClass, classified};
use colony::queue::{JobArgs, Queue, QueueError, WebhookArgs};
use comfy_table::Table;
use comfy_table::presets::ASCII_NO_BORDERS;
use hooks::{EVENTS, Format, Secret, UnknownEvent, Webhook};
use serde_json::{Value, json};
use sqlx::PgPool;
use url::Url;

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Register a webhook. Prints its id and signing secret; the secret is
    /// shown this once only.
    Add {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Where to POST the events: an http(s) URL.
        #[arg(value_name = "URL")]
        url: String,
        /// Events to send, comma-separated (default: all): channel.live,
        /// channel.offline, recording.started, recording.completed,
        /// recording.interrupted, recording.failed, job.dead, cell.dead.
        #[arg(long, env = "COLONY_WEBHOOK_EVENTS", value_delimiter = ',', value_name = "EVENTS")]
        events: Vec<String>,
        /// The body: the JSON event, or one readable line for a Discord webhook.
        #[arg(long, env = "COLONY_WEBHOOK_FORMAT", value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Let the webhook be a loopback or private address (a receiver on
        /// this host or this network). Without it such an address is refused,
        /// here and after every DNS answer at delivery; link-local and cloud
        /// metadata addresses are refused even with it.
        #[arg(long)]
        allow_private: bool,
    },
    /// List webhooks (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook. Deliveries already queued for it end without sending.
    Remove {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(value_name = "ID")]
        id: i64,
    },
}

pub async fn run(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add { db, url, events, format, allow_private } => {
            let mut new = NewWebhook::parse(&url, &events, format).map_err(classified)?;
            new.allow_private = allow_private;
            new.check_address().await.map_err(classified)?;
            let pool = colony::db::connect(&db).await?;
            let (id, secret) = add(&pool, &new).await.map_err(classified)?;
            println!("webhook {id} added: {} to {}", new.events.join(","), redact_url(&new.url));
            println!("secret: {}", secret.reveal());
            println!("keep the secret now: it will not be shown again");
        }
        WebhookCommand::List { db, json } => {
            let pool = colony::db::connect(&db).await?;
            let hooks = crate::webhook::hooks::list(&pool).await.map_err(|e| classified(WebhookError::Db(e)))?;
            print_list(&hooks, json);
        }
        WebhookCommand::Remove { db, id } => {
            let pool = colony::db::connect(&db).await?;
            remove(&pool, id).await.map_err(classified)?;
            println!("webhook {id} removed");
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The operator's input was wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("there is no webhook {0}; `mothership webhook list` shows them")]
    NotFound(i64),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("job queue error")]
    Queue(#[from] QueueError),
}

impl Classify for WebhookError {
    fn class(&self) -> ErrorClass {
        match self {
            WebhookError::Invalid(_) | WebhookError::NotFound(_) => ErrorClass::Config,
            WebhookError::Db(_) => ErrorClass::Transient,
            WebhookError::Queue(e) => e.class(),
        }
    }
}

impl From<UnknownEvent> for WebhookError {
    fn from(e: UnknownEvent) -> Self {
        WebhookError::Invalid(e.to_string())
    }
}

/// A webhook to register, checked.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: Url,
    pub events: Vec<&'static str>,
    pub format: Format,
    /// `--allow-private`: a loopback or private address is meant.
    pub allow_private: bool,
}

impl NewWebhook {
    /// An http(s) URL with a host, and known events (none given: all).
    pub fn parse(url: &str, events: &[String], format: Format) -> Result<Self, WebhookError> {
        let shown = || redact_raw(url.trim());
        let parsed = Url::parse(url.trim())
            .map_err(|e| WebhookError::Invalid(format!("'{}' is not a valid URL ({e})", shown())))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(WebhookError::Invalid(format!("'{}' is not an http(s) URL with a host", shown())));
        }
        let given: Vec<&str> = events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).collect();
        let events = if given.is_empty() { EVENTS.to_vec() } else { crate::webhook::hooks::parse_events(&given)? };
        Ok(Self { url: parsed, events, format, allow_private: false })
    }

    /// Refuse a loopback, private, link-local or metadata address, literal
    /// or as the name resolves now, unless `--allow-private` (never a
    /// metadata address). A name that does not resolve yet is let through:
    /// every delivery checks again.
    pub async fn check_address(&self) -> Result<(), WebhookError> {
        let shown = redact_url(&self.url);
        let private = || {
            WebhookError::Invalid(format!(
                "{shown} is a loopback, private or link-local address; add --allow-private if a receiver there is \
                 meant (metadata addresses are never allowed)"
            ))
        };
        if !crate::delivery::literal_allowed(&self.url, self.allow_private) {
            return Err(private());
        }
        let (Some(url::Host::Domain(host)), Some(port)) = (self.url.host(), self.url.port_or_known_default()) else {
            return Ok(());
        };
        let Ok(found) = tokio::net::lookup_host((host, port)).await else { return Ok(()) };
        let found: Vec<std::net::SocketAddr> = found.collect();
        let guard = if self.allow_private {
            colony::hls::policy::GuardedResolver::allowing_any_private()
        } else {
            colony::hls::policy::GuardedResolver::default()
        };
        guard.filter(host, found).map(|_| ()).map_err(|_| private())
    }
}

/// Register a webhook with a fresh secret; its id and the secret.
pub async fn add(pool: &PgPool, new: &NewWebhook) -> Result<(i64, Secret), WebhookError> {
    let secret = Secret::generate();
    let id = sqlx::query_scalar(
        "INSERT INTO webhooks (url, events, format, secret, allow_private) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(new.url.as_str())
    .bind(&new.events)
    .bind(new.format.as_str())
    .bind(secret.reveal())
    .bind(new.allow_private)
    .fetch_one(pool)
    .await?;
    Ok((id, secret))
}

pub async fn remove(pool: &PgPool, id: i64) -> Result<(), WebhookError> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(pool).await?;
    if done.rows_affected() == 0 { Err(WebhookError::NotFound(id)) } else { Ok(()) }
}

/// A URL without its query, fragment and credentials, as lists show it: a
/// query may carry a token (and a Discord URL's path does, so the path is
/// cut to its first segment).
pub fn redact_url(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let mut segments = url.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
    if let Some(first) = segments.next() {
        shown.push('/');
        shown.push_str(first);
        if segments.next().is_some() {
            shown.push_str("/…");
        }
    }
    shown
}

fn redact_raw(raw: &str) -> String {
    Url::parse(raw).map(|u| redact_url(&u)).unwrap_or_else(|_| raw.chars().take(40).collect())
}

fn print_list(hooks: &[Webhook], as_json: bool) {
    let shown: Vec<Value> = hooks
        .iter()
        .map(|h| {
            let url = Url::parse(&h.url).map(|u| redact_url(&u)).unwrap_or_else(|_| "?".into());
            json!({ "id": h.id, "url": url, "events": h.events, "format": h.format, "enabled": h.enabled, "created_at": h.created_at })
        })
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("serializable"));
        return;
    }
    let mut t = Table::new();
    t.load_style(ASCII_NO_BORDERS).set_header(vec!["ID", "URL", "EVENTS", "FORMAT", "ENABLED", "CREATED"]);
    for (h, s) in hooks.iter().zip(&shown) {
        let events = if h.events.len() == EVENTS.len() { "all".to_owned() } else { h.events.join(",") };
        t.add_row(vec![
            h.id.to_string(),
            s["url"].as_str().unwrap_or_default().to_owned(),
            events,
            h.format.clone(),
            h.enabled.to_string(),
            h.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    println!("{t}");
}

/// How far before the last scan's end the next one starts: a row written
/// with `now()` in a transaction that committed later is still found.
const OVERLAP_SECS: f64 = 600.0;

/// The events of a window, one row per (hook, event) not delivered yet.
/// Each event's id is deterministic, from its row and its time.
const EVENTS_SQL: &str = "
WITH events AS (
    SELECT 'recording.started' AS type, 'recording.started:' || r.id AS id, r.started_at AS at,
           jsonb_build_object('recording_id', r.id, 'channel_id', c.id, 'channel', c.login,
                              'channel_name', c.display_name, 'title', r.title, 'category', r.category,
                              'state', r.state, 'source', r.source, 'started_at', r.started_at) AS data
      FROM recordings r JOIN channels c ON c.id = r.channel_id
     WHERE r.source = 'live' AND r.started_at >= $1 AND r.started_at <= $2
    UNION ALL
    SELECT 'recording.' || CASE r.state WHEN 'complete' THEN 'completed' ELSE r.state::text END,
           'recording.' || CASE r.state WHEN 'complete' THEN 'completed' ELSE r.state::text END || ':' || r.id,
           r.ended_at,
           jsonb_build_object('recording_id', r.id, 'channel_id', c.id, 'channel', c.login,
                              'channel_name', c.display_name, 'title', r.title, 'category', r.category,
                              'state', r.state, 'source', r.source, 'started_at', r.started_at,
                              'ended_at', r.ended_at, 'duration_secs', r.duration_secs,
                              'segments', r.segment_count, 'gaps', r.gap_count, 'bytes', r.bytes,
                              'error', r.error)
      FROM recordings r JOIN channels c ON c.id = r.channel_id
     WHERE r.ended_at IS NOT NULL AND r.state IN ('complete', 'interrupted', 'failed')
       AND r.ended_at >= $1 AND r.ended_at <= $2
    UNION ALL
    SELECT 'channel.live', 'channel.live:' || c.id || ':' || (EXTRACT(EPOCH FROM c.live_since) * 1000)::bigint,
           c.live_since,
           jsonb_build_object('channel_id', c.id, 'channel', c.login, 'channel_name', c.display_name,
                              'platform', c.platform, 'title', c.stream_title, 'category', c.stream_category,
                              'live_since', c.live_since)
      FROM channels c
     WHERE c.live_since >= $1 AND c.live_since <= $2
    UNION ALL
    SELECT 'channel.offline', 'channel.offline:' || c.id || ':' || (EXTRACT(EPOCH FROM c.offline_since) * 1000)::bigint,
           c.offline_since,
           jsonb_build_object('channel_id', c.id, 'channel', c.login, 'channel_name', c.display_name,
                              'platform', c.platform, 'offline_since', c.offline_since)
      FROM channels c
     WHERE c.offline_since >= $1 AND c.offline_since <= $2
    UNION ALL
    SELECT 'job.dead', 'job.dead:' || j.id || ':' || (EXTRACT(EPOCH FROM j.finalized_at) * 1000)::bigint,
           j.finalized_at,
           jsonb_build_object('job_id', j.id, 'kind', j.kind, 'attempt', j.attempt,
                              'max_attempts', j.max_attempts, 'last_error', j.last_error,
                              'created_at', j.created_at, 'dead_at', j.finalized_at)
      FROM jobs j
     WHERE j.state = 'dead' AND j.kind <> 'webhook' AND j.finalized_at >= $1 AND j.finalized_at <= $2
    UNION ALL
    SELECT 'cell.dead', 'cell.dead:' || x.id, x.exited_at,
           jsonb_build_object('cell_id', x.id, 'kind', x.kind, 'backend', x.backend, 'host', x.host,
                              'channel', c.login, 'recording_id', x.recording_id,
                              'why', COALESCE(x.detail ->> 'dead_because', x.detail ->> 'launch_error'),
                              'started_at', x.started_at, 'dead_at', x.exited_at)
      FROM cells x LEFT JOIN channels c ON c.id = x.channel_id
     WHERE x.state = 'dead' AND x.exited_at >= $1 AND x.exited_at <= $2
)
SELECT h.id AS hook_id, e.type, e.id, e.at, e.data
  FROM events e
  JOIN webhooks h ON h.enabled AND e.type = ANY (h.events) AND h.created_at <= e.at
 WHERE NOT EXISTS (SELECT 1 FROM jobs j
                    WHERE j.kind = 'webhook' AND j.unique_key = 'webhook:' || h.id || ':' || e.id)
 ORDER BY e.at, e.id, h.id";

/// One (hook, event) the scan found.
#[derive(Debug, sqlx::FromRow)]
struct Found {
    hook_id: i64,
    #[sqlx(rename = "type")]
    kind: String,
    id: String,
    at: DateTime<Utc>,
    data: Value,
}

impl Found {
    /// The delivery job. Its arguments hold the event, never the URL or the secret.
    fn job(self) -> colony::queue::NewJob {
        let payload = json!({ "type": self.kind, "timestamp": self.at, "data": self.data });
        JobArgs::Webhook(WebhookArgs { hook_id: self.hook_id, event_id: self.id, event_type: self.kind, payload }).job()
    }
}

/// Queue a signed delivery for every new event each webhook asked for.
/// Called by every tick; running it twice queues nothing twice.
pub async fn enqueue_events(pool: &sqlx::PgPool) -> Result<u64, WebhookError> {
    let (until, since): (DateTime<Utc>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT now(), COALESCE(c.webhook_scanned_until, (SELECT min(created_at) FROM webhooks WHERE enabled))
                       - make_interval(secs => $1)
           FROM colony c",
    )
    .bind(OVERLAP_SECS)
    .fetch_one(pool)
    .await?;
    // No webhook yet: nothing to scan, and no cursor to move.
    let Some(since) = since else { return Ok(0) };
    let found: Vec<Found> = sqlx::query_as(EVENTS_SQL).bind(since).bind(until).fetch_all(pool).await?;
    let created = if found.is_empty() {
        0
    } else {
        let jobs: Vec<_> = found.into_iter().map(Found::job).collect();
        Queue::new(pool.clone()).enqueue_many(&jobs).await?
    };
    sqlx::query("UPDATE colony SET webhook_scanned_until = $1").bind(until).execute(pool).await?;
    if created > 0 {
        tracing::info!(deliveries = created, "queued webhook deliveries");
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host_and_events_known() {
        let all = NewWebhook::parse("https://hooks.example/in", &[], Format::Json).unwrap();
        assert_eq!(all.events, EVENTS);
        let some =
            NewWebhook::parse("http://127.0.0.1:9/x", &["job.dead".into(), " cell.dead".into()], Format::Discord)
                .unwrap();
        assert_eq!(some.events, ["job.dead", "cell.dead"]);
        for bad in ["ftp://x/y", "not a url", "file:///etc/passwd", "http://"] {
            let e = NewWebhook::parse(bad, &[], Format::Json).unwrap_err();
            assert!(matches!(e, WebhookError::Invalid(_)), "{bad}: {e}");
            assert_eq!(e.class(), ErrorClass::Config);
        }
        let e = NewWebhook::parse("https://h/", &["channel.exploded".into()], Format::Json).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Config);
        assert!(!e.to_string().contains('\n') && e.to_string().contains("channel.exploded"), "{e}");
    }

    #[test]
    fn shown_urls_lose_queries_credentials_and_token_paths() {
        let shown = |u: &str| redact_url(&Url::parse(u).unwrap());
        assert_eq!(shown("https://user:pw@h.example:8443/in?token=s3cret#x"), "https://h.example:8443/in");
        assert_eq!(shown("https://discord.com/api/webhooks/123/t0ken"), "https://discord.com/api/…");
        assert_eq!(shown("http://h/"), "http://h");
        assert_eq!(redact_raw("http://[bad"), "http://[bad");
    }
}
