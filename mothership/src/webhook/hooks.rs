//! Webhooks as both sides of a delivery see them: the event names, the
//! secret and the Standard Webhooks signature, and the `webhooks` table's
//! reads.
//!
//! The mothership registers hooks, queues deliveries, and signs and sends
//! them itself: no cell ever reads a secret (the cells' database roles
//! cannot read this table). The signature is the one Standard Webhooks
//! (and Svix) define: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! where the key is the decoded bytes of the `whsec_…` secret. Receivers
//! verify it with any of the published libraries.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;

/// Every event a webhook can subscribe to.
pub const EVENTS: [&str; 8] = [
    "channel.live",
    "channel.offline",
    "recording.started",
    "recording.completed",
    "recording.interrupted",
    "recording.failed",
    "job.dead",
    "cell.dead",
];

/// An event name that is not one of [`EVENTS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{}' is not a webhook event; use one of {}", .0.escape_debug(), EVENTS.join(", "))]
pub struct UnknownEvent(pub String);

/// Check event names, dropping repeats and keeping [`EVENTS`]' order.
pub fn parse_events<S: AsRef<str>>(names: &[S]) -> Result<Vec<&'static str>, UnknownEvent> {
    for name in names {
        let name = name.as_ref().trim();
        if !EVENTS.contains(&name) {
            return Err(UnknownEvent(name.to_owned()));
        }
    }
    Ok(EVENTS.into_iter().filter(|e| names.iter().any(|n| n.as_ref().trim() == *e)).collect())
}

/// What a delivery's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The event itself: `{"type", "timestamp", "data"}`.
    #[default]
    Json,
    /// `{"content": "<one readable line>"}`, what a Discord webhook takes.
    Discord,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Discord => "discord",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "discord" => Ok(Format::Discord),
            other => Err(format!("'{}' is not a webhook format; use json or discord", other.escape_debug())),
        }
    }
}

/// A webhook's signing secret, `whsec_<base64 of the key>`. Its `Debug`
/// never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// A secret that is not `whsec_` and base64 of 24 to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret must be whsec_ followed by base64 of 24 to 64 bytes")]
pub struct BadSecret;

impl Secret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// Read a stored or given `whsec_…` secret.
    pub fn parse(raw: &str) -> Result<Self, BadSecret> {
        let encoded = raw.trim().strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(BadSecret);
        }
        Ok(Self { key })
    }

    /// The form shown to the operator once and stored.
    pub fn reveal(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.key))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        sign(&self.key, id, timestamp, body)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

/// Standard Webhooks' signature: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A webhook as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub format: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// What a delivery needs of its webhook. `Debug` keeps the URL's path and
/// query and the secret out (a Discord URL carries its token in the path).
#[derive(Clone)]
pub struct Target {
    pub url: url::Url,
    pub secret: Secret,
    pub format: Format,
    pub enabled: bool,
    /// Added with `--allow-private`: it may be a loopback or private address.
    pub allow_private: bool,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A webhook row that cannot be delivered to (written by hand, say).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("webhook {0} has a URL that does not parse")]
    Url(i64),
    #[error("webhook {0}: {1}")]
    Secret(i64, BadSecret),
    #[error("webhook {0}: {1}")]
    Format(i64, String),
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl colony::exit::Classify for TargetError {
    fn class(&self) -> colony::exit::ErrorClass {
        match self {
            TargetError::Db(_) => colony::exit::ErrorClass::Transient,
            _ => colony::exit::ErrorClass::Permanent,
        }
    }
}

/// Every webhook, oldest first, without secrets.
pub async fn list<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Vec<Webhook>, sqlx::Error> {
    sqlx::query_as("SELECT id, url, events, format, enabled, created_at FROM webhooks ORDER BY id").fetch_all(db).await
}

/// Where and how to deliver to webhook `id`; None when it was removed.
pub async fn target<'e>(db: impl sqlx::PgExecutor<'e>, id: i64) -> Result<Option<Target>, TargetError> {
    let row: Option<(String, String, String, bool, bool)> =
        sqlx::query_as("SELECT url, secret, format, enabled, allow_private FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some((url, secret, format, enabled, allow_private)) = row else {
        return Ok(None);
    };
    Ok(Some(Target {
        url: url::Url::parse(&url).map_err(|_| TargetError::Url(id))?,
        secret: Secret::parse(&secret).map_err(|e| TargetError::Secret(id, e))?,
        format: format.parse().map_err(|e| TargetError::Format(id, e))?,
        enabled,
        allow_private,
    }))
}

/// The operator's input: fixed by giving a valid one.
impl colony::exit::Classify for UnknownEvent {
    fn class(&self) -> colony::exit::ErrorClass {
        colony::exit::ErrorClass::Config
    }
}

/// The operator's input: fixed by giving a valid one.
impl colony::exit::Classify for BadSecret {
    fn class(&self) -> colony::exit::ErrorClass {
        colony::exit::ErrorClass::Config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The example in the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signs_a_vector_computed_with_pythons_hmac() {
        // python3: base64.b64encode(hmac.new(bytes(range(32)), msg, hashlib.sha256).digest())
        let key: Vec<u8> = (0u8..32).collect();
        let secret = Secret::parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let body = br#"{"type":"recording.completed"}"#;
        let expected = "v1,/XP6dqjyE4cWyc0knToyTxR6pEbeUD3aVdKgS2SknP0=";
        assert_eq!(sign(&key, "recording.completed:42", 1700000000, body), expected);
        assert_eq!(secret.sign("recording.completed:42", 1700000000, body), expected);
        assert_ne!(secret.sign("recording.completed:42", 1700000001, body), expected);
    }

    #[test]
    fn secrets_round_trip_and_never_show_in_debug() {
        let secret = Secret::generate();
        let shown = secret.reveal();
        assert!(shown.starts_with("whsec_"), "{shown}");
        assert_eq!(Secret::parse(&shown).unwrap(), secret);
        assert!(!format!("{secret:?}").contains(&shown[6..]));
        assert_ne!(Secret::generate(), secret);
        for bad in ["", "whsec_", "whsec_!!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"] {
            assert_eq!(Secret::parse(bad), Err(BadSecret), "{bad}");
        }
    }

    #[test]
    fn events_are_checked_deduplicated_and_ordered() {
        assert_eq!(parse_events(&["job.dead", "channel.live", "job.dead"]).unwrap(), ["channel.live", "job.dead"]);
        assert_eq!(parse_events(&EVENTS).unwrap(), EVENTS);
        let e = parse_events(&["channel.live", "channel.exploded"]).unwrap_err();
        assert_eq!(e, UnknownEvent("channel.exploded".into()));
        assert!(e.to_string().contains("recording.completed"), "{e}");
    }

    #[test]
    fn a_target_debug_shows_only_the_host() {
        let t = Target {
            url: "https://discord.example/api/webhooks/1/tok3n?x=s3cret".parse().unwrap(),
            secret: Secret::generate(),
            format: Format::Discord,
            enabled: true,
            allow_private: false,
        };
        let shown = format!("{t:?}");
        assert!(shown.contains("discord.example") && !shown.contains("tok3n") && !shown.contains("s3cret"), "{shown}");
    }
}
