//! Channels: the safe login that names a channel in object keys, the channel
//! row, and resolving a channel's source to an HLS URL (directly, or by
//! running the resolver profile it names; `crate::resolver` says why a row
//! never carries the command itself).

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use url::Url;

use crate::hls::HostPattern;
use crate::resolver::{ProfileName, ResolverError, Resolvers, Target};

/// A channel login: 1-64 of `a-z 0-9 _ -`, starting with a letter or digit.
/// The same rule the database enforces, so it is safe in an object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Login(String);

impl Login {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a safe channel login: use 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit",
                raw.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Login {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Channel {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub source_kind: String,
    pub source_url: String,
    /// The resolver profile it names (`COLONY_RESOLVER_<NAME>` on the host that runs it).
    pub resolver_profile: Option<String>,
    pub variant: String,
    pub enabled: bool,
    pub pipeline: serde_json::Value,
    /// Hosts besides the source's own that its playlists may name (CDNs).
    pub allowed_hosts: Vec<String>,
    /// The streaming platform of a `platform` channel (`twitch`, `youtube`, `kick`).
    pub platform: Option<String>,
    /// Its handle there (a Twitch login, a YouTube handle, a Kick slug).
    pub platform_handle: Option<String>,
    /// Its immutable id there, once known (a YouTube `UC…` id, a Twitch user id).
    pub platform_id: Option<String>,
    /// Record the channel's chat beside the video (Twitch channels; on by default).
    pub chat: bool,
}

/// The columns a [`Channel`] is read from.
pub const COLUMNS: &str = "id, login, display_name, source_kind, source_url, resolver_profile, variant, enabled, pipeline, \
                           allowed_hosts, platform, platform_handle, platform_id, chat";

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Channel>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM channels WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// A channel's extra allowed hosts (for jobs that fetch on its behalf);
/// none for a channel that does not exist, and a malformed entry is skipped.
pub async fn allowed_hosts(pool: &PgPool, channel_id: i64) -> Result<Vec<HostPattern>, sqlx::Error> {
    let hosts: Option<Vec<String>> = sqlx::query_scalar("SELECT allowed_hosts FROM channels WHERE id = $1")
        .bind(channel_id)
        .fetch_optional(pool)
        .await?;
    Ok(hosts.unwrap_or_default().iter().filter_map(|h| h.parse().ok()).collect())
}

impl Channel {
    /// The HLS URL to record: the source URL itself, or what its resolver
    /// profile prints. A `command` channel names its profile; a platform
    /// channel uses its own, else its platform's (`twitch`, …).
    pub async fn resolve(&self, timeout: Duration, resolvers: &Resolvers) -> Result<Url, ResolverError> {
        match self.profile()? {
            Some(profile) => {
                let target = Target { url: &self.source_url, handle: self.platform_handle.as_deref() };
                resolvers.run_profile(&profile, target, timeout).await
            }
            None => Url::parse(&self.source_url)
                .map_err(|_| ResolverError::BadUrl(crate::config::redact_source_url(&self.source_url))),
        }
    }

    /// The resolver profile this channel runs, if any.
    pub fn profile(&self) -> Result<Option<ProfileName>, ResolverError> {
        match (&self.source_kind[..], &self.resolver_profile) {
            ("command" | "platform", Some(own)) => ProfileName::parse(own).map(Some),
            ("platform", None) => match self.platform() {
                Some(platform) => ProfileName::parse(platform.as_str()).map(Some),
                None => Err(ResolverError::BadTemplate("a platform channel without a platform".into())),
            },
            ("command", None) => Err(ResolverError::BadTemplate("a command channel without a resolver profile".into())),
            _ => Ok(None),
        }
    }

    /// The platform a `platform` channel lives on.
    pub fn platform(&self) -> Option<crate::platform::Platform> {
        self.platform.as_deref().and_then(|p| p.parse().ok())
    }

    /// The channel's extra allowed hosts; a malformed entry is skipped.
    pub fn allowed_hosts(&self) -> Vec<HostPattern> {
        self.allowed_hosts.iter().filter_map(|h| h.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        for ok in ["a", "some_streamer-99", "0day"] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Upper", "../x", "a/b", "-lead", "a b", &"x".repeat(65)] {
            assert!(Login::parse(bad).is_err(), "{bad}");
        }
    }
}
