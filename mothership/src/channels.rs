//! The `channels` table: every statement that writes it. The operator adds,
//! changes, enables and removes channels (`channel …`, the dashboard); a
//! tick stores what its probes saw and counts failed starts; a platform
//! client keeps the id it looked up. Input is validated here, before
//! anything is written. Other modules read channels; none writes them, but
//! for `migrate`'s schema-21 pre-step, which rewrites the old `resolver`
//! column before the migration that renames it (this module knows only the
//! schema as it is).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use url::Url;

use crate::admin::AdminError;
use colony::channel::Login;
use colony::config::redact_source_url;
use colony::platform::{self, Platform, PlatformChannel, PlatformError};
use colony::resolver::ProfileName;

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
                let p: Platform = p.parse().map_err(|e| invalid(PlatformError::from(e)))?;
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

pub async fn add(pool: &PgPool, c: &NewChannel) -> Result<i64, AdminError> {
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

pub async fn update(pool: &PgPool, login: &str, u: &ChannelUpdate) -> Result<(), AdminError> {
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
pub async fn remove(pool: &PgPool, login: &str) -> Result<(), AdminError> {
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

/// A failed start's backoff is over: the channel's next start is not delayed.
pub async fn start_succeeded(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE channels SET start_failures = 0, start_retry_at = NULL WHERE id = $1 AND start_failures > 0")
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Count a failed start of the channel's observer, and hold the next one
/// back by `wait(failures so far)`. Returns when the next may come (None:
/// the channel is gone).
pub async fn start_failed(
    pool: &PgPool,
    id: i64,
    wait: impl Fn(u32) -> Duration,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let failed: i32 = sqlx::query_scalar("SELECT start_failures FROM channels WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0);
    sqlx::query_scalar(
        "UPDATE channels SET start_failures = start_failures + 1,
                start_retry_at = now() + make_interval(secs => $2)
          WHERE id = $1 RETURNING start_retry_at",
    )
    .bind(id)
    .bind(wait(u32::try_from(failed).unwrap_or(0)).as_secs_f64())
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Keep the platform's own id of a channel, once looked up by its handle.
pub async fn set_platform_id(pool: &PgPool, id: i64, platform_id: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE channels SET platform_id = $2 WHERE id = $1")
        .bind(id)
        .bind(platform_id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Store probe results, and return them as stored: a live result for a
/// source that has not moved on within `frozen_after` becomes offline. Each
/// is stamped with `began`, when the pass began: no earlier than what it saw.
pub async fn store_probes(
    pool: &PgPool,
    results: &[crate::probe::ProbeResult],
    began: chrono::DateTime<chrono::Utc>,
    frozen_after: Duration,
) -> Result<Vec<crate::probe::ProbeResult>, sqlx::Error> {
    let ids: Vec<i64> = results.iter().map(|r| r.channel_id).collect();
    let live: Vec<bool> = results.iter().map(|r| r.live).collect();
    let errors: Vec<Option<&str>> = results.iter().map(|r| r.error.as_ref().map(|e| e.message.as_str())).collect();
    let prints: Vec<Option<String>> = results.iter().map(|r| r.fingerprint.clone()).collect();
    let stream = |f: fn(&crate::platform_api::StreamInfo) -> String| -> Vec<Option<String>> {
        results.iter().map(|r| r.stream.as_ref().map(f)).collect()
    };
    let (stream_ids, titles, categories) =
        (stream(|s| s.id.clone()), stream(|s| s.title.clone()), stream(|s| s.category.clone()));
    let started: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        results.iter().map(|r| r.stream.as_ref().map(|s| s.started_at)).collect();
    let frozen: Vec<(i64, bool)> = sqlx::query_as(
        "WITH p AS (
             SELECT p.id, p.live, p.error, p.print, p.stream_id, p.title, p.category, p.started,
                    COALESCE(p.print IS NOT NULL AND p.print IS NOT DISTINCT FROM c.probe_fingerprint
                        AND c.progressed_at < now() - make_interval(secs => $5), false) AS frozen
               FROM UNNEST($1::bigint[], $2::bool[], $3::text[], $4::text[], $6::text[], $7::text[], $8::text[],
                           $9::timestamptz[]) AS p(id, live, error, print, stream_id, title, category, started)
               JOIN channels c ON c.id = p.id)
         UPDATE channels c
            SET live = p.live AND NOT p.frozen,
                live_since = CASE WHEN p.live AND NOT p.frozen THEN COALESCE(c.live_since, now()) END,
                offline_since = CASE WHEN p.live AND NOT p.frozen THEN NULL
                                     WHEN c.live THEN now() ELSE c.offline_since END,
                progressed_at = CASE WHEN p.print IS DISTINCT FROM c.probe_fingerprint THEN now() ELSE c.progressed_at END,
                probe_fingerprint = p.print,
                stream_id = CASE WHEN p.live AND NOT p.frozen THEN p.stream_id END,
                stream_title = CASE WHEN p.live AND NOT p.frozen THEN p.title END,
                stream_category = CASE WHEN p.live AND NOT p.frozen THEN p.category END,
                stream_started_at = CASE WHEN p.live AND NOT p.frozen THEN p.started END,
                probed_at = $10,
                probe_error = CASE WHEN p.frozen
                    THEN 'the source has served the same playlist since ' || to_char(c.progressed_at, 'YYYY-MM-DD HH24:MI:SS TZ') || '; treating it as offline'
                    ELSE p.error END,
                updated_at = now()
           FROM p
          WHERE c.id = p.id
         RETURNING c.id, p.frozen",
    )
    .bind(&ids)
    .bind(&live)
    .bind(&errors)
    .bind(&prints)
    .bind(frozen_after.as_secs_f64())
    .bind(&stream_ids)
    .bind(&titles)
    .bind(&categories)
    .bind(&started)
    .bind(began)
    .fetch_all(pool)
    .await?;
    colony::recording::rows::note_broadcast(pool, &ids, &stream_ids, &titles, &categories, &started).await?;
    let frozen: std::collections::HashMap<i64, bool> = frozen.into_iter().collect();
    Ok(results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if frozen.get(&r.channel_id).copied().unwrap_or(false) {
                r.live = false;
                r.error = Some(crate::probe::ProbeError::new(
                    crate::probe::ProbeFailure::Frozen,
                    "the source has served the same playlist for too long; treating it as offline",
                ));
            }
            r
        })
        .collect())
}
