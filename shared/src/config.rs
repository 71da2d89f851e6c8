//! Configuration shared by every binary: the database URL (whose password must
//! never reach a log) and the clap argument groups each binary flattens in.
//!
//! Values are parsed into typed form at start-up so that a mistake is reported
//! once, in one line, before any work starts.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use url::Url;

/// A Postgres URL that prints with its password replaced by `***`.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    options: PgConnectOptions,
}

#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL is not a valid postgres URL ({reason}); expected postgres://user:password@host:5432/dbname")]
pub struct InvalidDatabaseUrl {
    reason: String,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidDatabaseUrl> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(InvalidDatabaseUrl { reason: "it is empty".into() });
        }
        let parsed = Url::parse(raw).map_err(|e| InvalidDatabaseUrl { reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(InvalidDatabaseUrl { reason: format!("scheme '{}' is not postgres://", parsed.scheme()) });
        }
        let options = PgConnectOptions::from_str(raw)
            .map_err(|e| InvalidDatabaseUrl { reason: redact_in(&e.to_string(), &parsed) })?;
        Ok(Self { raw: raw.to_owned(), options })
    }

    /// The full URL, password included. Only for handing to a child process.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The URL as it may be printed.
    pub fn redacted(&self) -> String {
        redact_url(&self.raw)
    }
}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// A secret from a flag or the environment (an API client secret): never
/// printed, in logs, errors or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() { Err("it is empty".into()) } else { Ok(Secret(s.trim().to_owned())) }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replace the password of any URL with `***`; leave anything unparseable as a
/// fixed placeholder rather than risk printing it.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            // `password=` in the query string is also accepted by libpq.
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") { "***".into() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "<unparseable url>".to_owned(),
    }
}

/// A source URL as it may be shown: password and every query value masked
/// (`?token=***`), since CDNs and platforms put access tokens there.
pub fn redact_source_url(raw: &str) -> String {
    if let Ok(url) = Url::parse(raw) {
        return mask_url(url);
    }
    // Not a URL: show what comes before any query, userinfo masked.
    let head = raw.split(['?', '#']).next().unwrap_or_default();
    let head = match head.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => head.to_owned(),
    };
    let mut shown: String = head.chars().take(200).collect();
    if head.len() < raw.len() {
        shown.push_str("?***");
    }
    shown
}

fn mask_url(mut url: Url) -> String {
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    if !keys.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    } else if url.query().is_some() {
        url.set_query(Some("***"));
    }
    url.to_string()
}

/// Free text from elsewhere (a resolver's stderr, a tool's error line) with
/// every URL in it masked as [`redact_source_url`] does.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let Some(at) = word.find("://") else {
            out.push_str(piece);
            continue;
        };
        // The scheme is the run of scheme characters just before `://`;
        // quotes, brackets and punctuation around the URL stay as they are.
        let start = word[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = word.trim_end_matches(|c: char| "'\"),.;:>]}".contains(c)).len().max(at + 3);
        out.push_str(&word[..start]);
        match Url::parse(&word[start..end]) {
            Ok(url) => out.push_str(&mask_url(url)),
            Err(_) => out.push_str("<url>"),
        }
        out.push_str(&piece[end..]);
    }
    out
}

fn redact_in(message: &str, url: &Url) -> String {
    match url.password() {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message.to_owned(),
    }
}

/// A humantime duration that must be more than zero: an interval of 0 would
/// make a timer panic or a loop spin. Refused at parse time, with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonZeroDuration(std::time::Duration);

impl NonZeroDuration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for NonZeroDuration {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let d: humantime::Duration = raw.trim().parse().map_err(|e: humantime::DurationError| e.to_string())?;
        let d: std::time::Duration = d.into();
        if d.is_zero() {
            return Err("it must be more than 0, e.g. 10s".into());
        }
        Ok(Self(d))
    }
}

impl fmt::Display for NonZeroDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<NonZeroDuration> for std::time::Duration {
    fn from(d: NonZeroDuration) -> Self {
        d.0
    }
}

/// `--database-url` / `DATABASE_URL`, flattened into every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL, e.g. postgres://colony:secret@db:5432/colony.
    /// The password is never printed.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: DatabaseUrl,

    /// Largest number of pooled connections this process opens.
    #[arg(long, env = "COLONY_DB_MAX_CONNECTIONS", default_value_t = 10, value_name = "N")]
    pub db_max_connections: u32,

    /// How long to wait for Postgres to accept a connection before giving up.
    #[arg(long, env = "COLONY_DB_CONNECT_TIMEOUT", default_value = "10s", value_name = "DURATION")]
    pub db_connect_timeout: humantime::Duration,

    /// Postgres cancels any statement that runs longer than this (0s: no
    /// limit). `mothership migrate` runs without it.
    #[arg(long, env = "COLONY_STATEMENT_TIMEOUT", default_value = "60s", value_name = "DURATION")]
    pub statement_timeout: humantime::Duration,
}

/// A cell's patience with Postgres at start.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Keep trying to reach Postgres this long at start, with backoff,
    /// before giving up. The mothership waits as long for a cell's first
    /// heartbeat, and its launchers set this to its own --start-grace.
    #[arg(long, env = "COLONY_START_GRACE", default_value = "90s", value_name = "DURATION")]
    pub start_grace: humantime::Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls_and_text_lose_their_tokens() {
        assert_eq!(
            redact_source_url("https://u:pw@cdn.example/live.m3u8?token=abc&sig=def"),
            "https://u:***@cdn.example/live.m3u8?token=***&sig=***"
        );
        assert_eq!(redact_source_url("https://cdn.example/a.m3u8"), "https://cdn.example/a.m3u8");
        assert_eq!(redact_source_url("not a url ?token=abc"), "not a url ?***");
        assert_eq!(redact_source_url("//u:pw@host/x?t=1"), "***@host/x?***");
        let line = "error: Unable to open URL: https://usher.example/x.m3u8?sig=s3cr3t (403)\nretry 'http://h/p?t=1',";
        let shown = redact_text(line);
        assert!(!shown.contains("s3cr3t") && !shown.contains("t=1"), "{shown}");
        assert_eq!(
            shown,
            "error: Unable to open URL: https://usher.example/x.m3u8?sig=*** (403)\nretry 'http://h/p?t=***',"
        );
        // Odd input never panics and never lets a query through.
        for odd in ["://", "é://x?t=1", "x://é?t=1é", "«http://h/?t=1»", "http://[::1?t=1", "ftp://u:p@h/"] {
            let shown = redact_text(odd);
            assert!(!shown.contains("t=1") && !shown.contains(":p@"), "{odd} -> {shown}");
        }
    }

    #[test]
    fn password_is_redacted_everywhere() {
        let url = DatabaseUrl::parse("postgres://colony:hunter2@db.example:5432/colony").unwrap();
        assert_eq!(url.to_string(), "postgres://colony:***@db.example:5432/colony");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.expose().contains("hunter2"));
        let q = redact_url("postgres://db/colony?user=a&password=hunter2");
        assert!(!q.contains("hunter2"), "{q}");
    }

    #[test]
    fn zero_durations_are_refused() {
        assert_eq!("10s".parse::<NonZeroDuration>().unwrap().get(), std::time::Duration::from_secs(10));
        for bad in ["0", "0s", "0ms", "", "soon"] {
            assert!(bad.parse::<NonZeroDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for bad in ["", "not a url", "mysql://x/y", "http://db/colony"] {
            let err = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("DATABASE_URL is not a valid postgres URL"), "{err}");
        }
        let err = DatabaseUrl::parse("postgres://u:sekrit@h:notaport/db").unwrap_err().to_string();
        assert!(!err.contains("sekrit"), "{err}");
    }
}
