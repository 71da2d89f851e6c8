//! Channels: the safe login that names a channel in object keys, the channel
//! row, and resolving a channel's source to an HLS URL (directly, or by
//! running its resolver command, e.g. `streamlink --stream-url {url} best`).
//!
//! A resolver command is stored in the database, so write access to Postgres
//! must not mean command execution on every host: the program must be on
//! the host's own allow-list (`COLONY_RESOLVERS`), options that make the
//! usual resolvers run commands or write files are refused, and the URL put
//! in place of `{url}` must be an http(s) URL, never an option.

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use url::Url;

use crate::hls::HostPattern;

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
pub const COLUMNS: &str = "id, login, display_name, source_kind, source_url, resolver, variant, enabled, pipeline, \
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

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("channel source URL '{0}' is not a valid URL")]
    BadUrl(String),
    #[error("resolver command is empty or cannot be split: {0}")]
    BadResolver(String),
    #[error("resolver program `{program}` is not allowed on this host; add it to COLONY_RESOLVERS (now: {allowed})")]
    NotAllowed { program: String, allowed: String },
    #[error("resolver option `{option}` is refused: it makes the program run commands or write files")]
    RefusedOption { option: String },
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
    pub async fn resolve(&self, timeout: Duration, resolvers: &Resolvers) -> Result<Url, SourceError> {
        match (&self.source_kind[..], &self.resolver) {
            ("command", Some(template)) => resolvers.run(template, &self.source_url, timeout).await,
            // A platform channel: its own resolver if it has one, else the
            // platform's template on this host (COLONY_RESOLVER_TWITCH, …).
            ("platform", own) => {
                let template = match (own, self.platform()) {
                    (Some(own), _) => own.clone(),
                    (None, Some(platform)) => platform.resolver_template(),
                    (None, None) => {
                        return Err(SourceError::BadResolver("a platform channel without a platform".into()));
                    }
                };
                resolvers.run_for(&template, &self.source_url, self.platform_handle.as_deref(), timeout).await
            }
            _ => Url::parse(&self.source_url)
                .map_err(|_| SourceError::BadUrl(crate::config::redact_source_url(&self.source_url))),
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

/// Options of streamlink and yt-dlp (and their kin) that run a command, load
/// code or configuration, or write files. A stored resolver carrying one is
/// refused even when its program is allowed.
const REFUSED_OPTIONS: &[&str] = &[
    "--exec",
    "--exec-before-download",
    "--player",
    "-p",
    "--player-args",
    "-a",
    "--output",
    "-o",
    "--record",
    "-r",
    "--record-and-pipe",
    "-R",
    "--config",
    "--config-location",
    "--config-locations",
    "--plugin-dir",
    "--plugin-dirs",
    "--batch-file",
    "--netrc-cmd",
    "--downloader",
    "--external-downloader",
    "--downloader-args",
    "--external-downloader-args",
    "--postprocessor-args",
    "--use-postprocessor",
    "--load-info-json",
    "--cookies",
];

/// The programs a resolver command may run on this host: the operator's
/// allow-list, `--resolvers` / `COLONY_RESOLVERS`, e.g. `streamlink,yt-dlp`.
/// Empty (the default) allows none.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Resolvers {
    /// Programs a channel's resolver command may run on this host,
    /// comma-separated, e.g. streamlink,yt-dlp. A resolver naming any other
    /// program is refused: write access to Postgres must not mean running
    /// commands here. Default: none.
    #[arg(long = "resolvers", env = "COLONY_RESOLVERS", value_delimiter = ',', value_name = "PROGRAMS")]
    pub resolvers: Vec<String>,
}

impl Resolvers {
    pub fn allowing(programs: &[&str]) -> Self {
        Self { resolvers: programs.iter().map(|p| p.to_string()).collect() }
    }

    fn allows(&self, program: &str) -> bool {
        self.resolvers.iter().any(|p| p.trim() == program)
    }

    /// Check `template` and split it into a program and its arguments, with
    /// `{url}` replaced (or appended) by `source_url`.
    pub fn command(&self, template: &str, source_url: &str) -> Result<(String, Vec<String>), SourceError> {
        self.command_for(template, source_url, None)
    }

    /// [`Resolvers::command`] for a platform channel: `{handle}` is its
    /// handle there (a Twitch login, a YouTube handle, a Kick slug; checked
    /// against the platform's rules when the channel was added). A template
    /// that names `{url}` or `{handle}` gets no URL appended.
    pub fn command_for(
        &self,
        template: &str,
        source_url: &str,
        handle: Option<&str>,
    ) -> Result<(String, Vec<String>), SourceError> {
        let url = Url::parse(source_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| SourceError::BadUrl(crate::config::redact_source_url(source_url)))?;
        let words = shell_words::split(template).map_err(|e| SourceError::BadResolver(e.to_string()))?;
        let Some((program, args)) = words.split_first() else {
            return Err(SourceError::BadResolver("no program".into()));
        };
        if !self.allows(program) {
            let allowed = if self.resolvers.is_empty() { "unset".to_owned() } else { self.resolvers.join(",") };
            return Err(SourceError::NotAllowed { program: program.chars().take(100).collect(), allowed });
        }
        if let Some(option) = args.iter().find(|a| {
            let name = a.split('=').next().unwrap_or_default();
            REFUSED_OPTIONS.contains(&name) || (a.starts_with("-o") && !a.starts_with("--"))
        }) {
            return Err(SourceError::RefusedOption { option: option.chars().take(60).collect() });
        }
        // A handle is letters, digits, '_', '-' and '.': nothing a program could read as more.
        let handle = handle
            .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .filter(|h| !h.is_empty() && !h.starts_with('-'));
        if template.contains("{handle}") && handle.is_none() {
            return Err(SourceError::BadResolver("the template names {handle} but the channel has none".into()));
        }
        let mut args: Vec<String> = args
            .iter()
            .map(|w| w.replace("{url}", url.as_str()).replace("{handle}", handle.unwrap_or_default()))
            .collect();
        if !template.contains("{url}") && !template.contains("{handle}") {
            args.push(url.to_string());
        }
        Ok((program.clone(), args))
    }

    /// Run `template` with `{url}` replaced, without a shell, and take the
    /// first line of its output that is an http(s) URL.
    pub async fn run(&self, template: &str, source_url: &str, timeout: Duration) -> Result<Url, SourceError> {
        self.run_for(template, source_url, None, timeout).await
    }

    /// [`Resolvers::run`] for a platform channel, with `{handle}` replaced too.
    pub async fn run_for(
        &self,
        template: &str,
        source_url: &str,
        handle: Option<&str>,
        timeout: Duration,
    ) -> Result<Url, SourceError> {
        let (program, args) = self.command_for(template, source_url, handle)?;
        run_resolver_command(&program, &args, timeout).await
    }
}

/// Most of a resolver's output that is read: it prints one URL.
const RESOLVER_OUTPUT_CAP: u64 = 64 * 1024;

/// Read a pipe to its end, keeping at most [`RESOLVER_OUTPUT_CAP`] bytes.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(RESOLVER_OUTPUT_CAP).read_to_end(&mut buf).await;
    }
    buf
}

async fn run_resolver_command(program: &str, args: &[String], timeout: Duration) -> Result<Url, SourceError> {
    let program = program.to_owned();
    let mut child = tokio::process::Command::new(&program)
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| SourceError::Spawn { program: program.clone(), source })?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
        (out, err, child.wait().await)
    };
    let (out, err, status) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| SourceError::Timeout { program: program.clone(), timeout })?;
    let status = status.map_err(|source| SourceError::Spawn { program: program.clone(), source })?;
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::trim)
        .find_map(|l| Url::parse(l).ok().filter(|u| matches!(u.scheme(), "http" | "https")))
        .ok_or_else(|| SourceError::NoUrl {
            program: program.clone(),
            status: status.to_string(),
            stderr: crate::config::redact_text(String::from_utf8_lossy(&err).lines().last().unwrap_or_default())
                .chars()
                .take(200)
                .collect(),
        })
}

/// A resolver that is not allowed, or a template or URL that cannot work,
/// is the operator's to fix; a resolver that fails or says nothing may do
/// better next time.
impl crate::exit::Classify for SourceError {
    fn class(&self) -> crate::exit::ErrorClass {
        use crate::exit::ErrorClass;
        match self {
            SourceError::BadUrl(_)
            | SourceError::BadResolver(_)
            | SourceError::NotAllowed { .. }
            | SourceError::RefusedOption { .. } => ErrorClass::Config,
            SourceError::Spawn { .. } | SourceError::Timeout { .. } | SourceError::NoUrl { .. } => {
                ErrorClass::Transient
            }
        }
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

    #[tokio::test]
    async fn resolver_output_is_parsed_without_a_shell() {
        let allowed = Resolvers::allowing(&["echo", "printf", "sh"]);
        let url = allowed.run("echo noise {url}/live.m3u8", "http://src.example", Duration::from_secs(5)).await;
        // `echo` prints one line: "noise http://...": not a URL by itself.
        assert!(url.is_err());
        let url = allowed
            .run("printf '%s\\n' junk {url}", "https://src.example/x.m3u8", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(url.as_str(), "https://src.example/x.m3u8");
        let err =
            allowed.run("sh -c 'sleep 5' {url}", "http://src.example/", Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, SourceError::Timeout { .. }));
    }

    /// Defect: a resolver stored in the database ran whatever program it named.
    #[test]
    fn only_allowed_programs_and_options_run() {
        let none = Resolvers::default();
        let err = none.command("streamlink --stream-url {url} best", "https://twitch.tv/x").unwrap_err();
        assert!(matches!(err, SourceError::NotAllowed { .. }), "{err}");
        assert!(err.to_string().contains("COLONY_RESOLVERS (now: unset)"), "{err}");
        let some = Resolvers::allowing(&["streamlink", "yt-dlp"]);
        assert!(matches!(some.command("/bin/sh -c id", "https://x.example/"), Err(SourceError::NotAllowed { .. })));
        assert!(matches!(some.command("sh -c id", "https://x.example/"), Err(SourceError::NotAllowed { .. })));
        let (program, args) = some.command("streamlink --stream-url {url} best", "https://twitch.tv/x").unwrap();
        assert_eq!((program.as_str(), args[1].as_str()), ("streamlink", "https://twitch.tv/x"));
        for bad in [
            "streamlink --player 'sh -c id' {url} best",
            "streamlink -p sh {url} best",
            "yt-dlp --exec 'rm -rf ~' {url}",
            "yt-dlp --exec=id {url}",
            "yt-dlp -o /etc/cron.d/x {url}",
            "yt-dlp -o/tmp/x {url}",
            "streamlink --config /tmp/evil {url} best",
        ] {
            assert!(matches!(some.command(bad, "https://x.example/"), Err(SourceError::RefusedOption { .. })), "{bad}");
        }
        // The URL can never become an option.
        for url in ["--exec=id", "-o/tmp/x", "file:///etc/passwd"] {
            assert!(matches!(some.command("yt-dlp -g {url}", url), Err(SourceError::BadUrl(_))), "{url}");
        }
    }

    #[test]
    fn a_platform_template_may_name_the_handle_instead_of_the_url() {
        let some = Resolvers::allowing(&["streamlink"]);
        let page = "https://www.twitch.tv/some_one";
        let (_, args) = some
            .command_for("streamlink --stream-url http://src:8080/{handle}/live.m3u8 best", page, Some("some_one"))
            .unwrap();
        assert_eq!(args, ["--stream-url", "http://src:8080/some_one/live.m3u8", "best"]);
        // No placeholder: the URL is appended, as before.
        let (_, args) = some.command_for("streamlink --stream-url", page, Some("some_one")).unwrap();
        assert_eq!(args.last().map(String::as_str), Some(page));
        // A handle that could be read as an option, or none at all, is refused.
        for bad in [Some("--exec=id"), Some("a b"), None] {
            let err = some.command_for("streamlink {handle} best", page, bad).unwrap_err();
            assert!(matches!(err, SourceError::BadResolver(_)), "{bad:?}: {err}");
        }
    }
}
