//! Channels: the safe login that names a channel in object keys, the channel
//! row, and resolving a channel's source to an HLS URL (directly, or by
//! running its resolver command, e.g. `streamlink --stream-url {url} best`).

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use url::Url;

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
    pub resolver: Option<String>,
    pub variant: String,
    pub enabled: bool,
    pub pipeline: serde_json::Value,
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Channel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, login, display_name, source_kind, source_url, resolver, variant, enabled, pipeline
           FROM channels WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("channel source URL '{0}' is not a valid URL")]
    BadUrl(String),
    #[error("resolver command is empty or cannot be split: {0}")]
    BadResolver(String),
    #[error("resolver `{program}` could not be started")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolver `{program}` did not answer within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("resolver `{program}` printed no http(s) URL (exit {status}): {stderr}")]
    NoUrl { program: String, status: String, stderr: String },
}

impl Channel {
    /// The HLS URL to record: the source URL itself, or what the resolver prints.
    pub async fn resolve(&self, timeout: Duration) -> Result<Url, SourceError> {
        match (&self.source_kind[..], &self.resolver) {
            ("command", Some(template)) => run_resolver(template, &self.source_url, timeout).await,
            _ => Url::parse(&self.source_url).map_err(|_| SourceError::BadUrl(self.source_url.clone())),
        }
    }
}

/// Run `template` with `{url}` replaced, without a shell, and take the first
/// line of its output that is an http(s) URL.
pub async fn run_resolver(template: &str, source_url: &str, timeout: Duration) -> Result<Url, SourceError> {
    let words = shell_words::split(template).map_err(|e| SourceError::BadResolver(e.to_string()))?;
    let mut words: Vec<String> = words.into_iter().map(|w| w.replace("{url}", source_url)).collect();
    if !template.contains("{url}") {
        words.push(source_url.to_owned());
    }
    let Some((program, args)) = words.split_first() else {
        return Err(SourceError::BadResolver("no program".into()));
    };
    let child =
        tokio::process::Command::new(program).args(args).kill_on_drop(true).stdin(std::process::Stdio::null()).output();
    let out = tokio::time::timeout(timeout, child)
        .await
        .map_err(|_| SourceError::Timeout { program: program.clone(), timeout })?
        .map_err(|source| SourceError::Spawn { program: program.clone(), source })?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find_map(|l| Url::parse(l).ok().filter(|u| matches!(u.scheme(), "http" | "https")))
        .ok_or_else(|| SourceError::NoUrl {
            program: program.clone(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().chars().take(200).collect(),
        })
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

    #[tokio::test]
    async fn resolver_output_is_parsed_without_a_shell() {
        let url = run_resolver("echo noise {url}/live.m3u8", "http://src.example", Duration::from_secs(5)).await;
        // `echo` prints one line: "noise http://...": not a URL by itself.
        assert!(url.is_err());
        let url = run_resolver("printf '%s\\n' junk {url}", "https://src.example/x.m3u8", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(url.as_str(), "https://src.example/x.m3u8");
        let err = run_resolver("sleep {url}", "5", Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, SourceError::Timeout { .. }));
    }
}
