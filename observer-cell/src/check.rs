//! `observer-cell --check`: what an image or host would run, before any
//! recording depends on it. A cell resolves a platform channel by running the
//! platform's resolver template (`COLONY_RESOLVER_TWITCH`, …), and only a
//! program on the host's allow-list (`COLONY_RESOLVERS`) may run; a missing
//! streamlink or a forgotten allow-list otherwise shows up only when a channel
//! goes live. The check needs no assignment and no database.
//!
//! [`admit`] and [`Report::problems`] are pure; [`run`] adds what only running
//! the programs can tell (are they on PATH, which version).

use std::fmt;
use std::time::Duration;

use colony::channel::{Resolvers, SourceError};
use colony::platform::Platform;
use serde::Serialize;

/// How long a program may take to print its version.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a program's output that is read: a version is one line.
const PROBE_OUTPUT_CAP: u64 = 16 * 1024;
/// Longest version line shown.
const VERSION_LINE_MAX: usize = 200;
/// A URL to check a template with: `Resolvers::command` wants a real one.
const SAMPLE_URL: &str = "https://example.com/channel";

/// Which resolver of a platform: live channels, or past broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Live,
    Vod,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Live => "live",
            Kind::Vod => "vod",
        })
    }
}

/// Whether the allow-list lets a template run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Admission {
    Allowed,
    NotAllowed,
    /// An option that runs commands or writes files: refused even when allowed.
    RefusedOption(String),
    /// The template cannot be split into words, or names no program.
    BadTemplate(String),
}

/// What running `program --version` told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Probe {
    /// It ran and printed this first line.
    Version(String),
    /// It ran but printed no version: why, in a few words.
    NoVersion(String),
    /// Not found on PATH.
    NotFound,
    /// Found, but it could not be started (permissions, a broken interpreter).
    Unrunnable(String),
    /// It did not answer within [`PROBE_TIMEOUT`].
    TimedOut,
}

impl Probe {
    /// Whether the program exists and starts: all a resolver needs of it.
    pub fn runs(&self) -> bool {
        !matches!(self, Probe::NotFound | Probe::Unrunnable(_))
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Version(line) => f.write_str(line),
            Probe::NoVersion(why) => write!(f, "runs, no version: {why}"),
            Probe::NotFound => f.write_str("not found on PATH"),
            Probe::Unrunnable(why) => write!(f, "cannot be started: {why}"),
            Probe::TimedOut => write!(f, "no answer to --version within {}s", PROBE_TIMEOUT.as_secs()),
        }
    }
}

/// One platform's live or VOD resolver on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolverCheck {
    pub platform: Platform,
    pub kind: Kind,
    /// The variable that overrides the template.
    pub variable: &'static str,
    /// The template, with URLs and credential-like option values masked.
    pub template: String,
    pub program: Option<String>,
    pub admission: Admission,
    /// None when the template names no program.
    pub probe: Option<Probe>,
}

/// What a live resolver needs fixed before it can run here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    BadTemplate { variable: &'static str, reason: String },
    RefusedOption { variable: &'static str, option: String },
    NotAllowed { program: String },
    NotFound { program: String },
    Unrunnable { program: String, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadTemplate { variable, reason } => write!(f, "fix the template in {variable} ({reason})"),
            Problem::RefusedOption { variable, option } => {
                write!(f, "drop the refused option {option} from {variable}")
            }
            Problem::NotAllowed { program } => write!(f, "add {program} to COLONY_RESOLVERS (or --resolvers)"),
            Problem::NotFound { program } => write!(f, "install {program} (not found on PATH)"),
            Problem::Unrunnable { program, reason } => write!(f, "repair {program} ({reason})"),
        }
    }
}

/// Everything `--check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub ffmpeg: Probe,
    /// The allow-list as given; empty allows no resolver.
    pub allowed: Vec<String>,
    pub resolvers: Vec<ResolverCheck>,
}

impl Report {
    /// What stops a live resolver from running, each fix once. VOD
    /// resolvers are shown but not required: the observer never runs them.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for check in self.resolvers.iter().filter(|c| c.kind == Kind::Live) {
            let program = check.program.clone().unwrap_or_default();
            let mut found = match &check.admission {
                Admission::Allowed => vec![],
                Admission::NotAllowed => vec![Problem::NotAllowed { program: program.clone() }],
                Admission::RefusedOption(option) => {
                    vec![Problem::RefusedOption { variable: check.variable, option: option.clone() }]
                }
                Admission::BadTemplate(reason) => {
                    vec![Problem::BadTemplate { variable: check.variable, reason: reason.clone() }]
                }
            };
            match &check.probe {
                Some(Probe::NotFound) => found.push(Problem::NotFound { program }),
                Some(Probe::Unrunnable(reason)) => found.push(Problem::Unrunnable { program, reason: reason.clone() }),
                _ => {}
            }
            for problem in found {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        problems
    }

    /// The report for a person: one line each.
    pub fn lines(&self) -> Vec<String> {
        let allowed: Vec<&str> = self.allowed.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
        let allowed = if allowed.is_empty() { "none (set COLONY_RESOLVERS)".to_owned() } else { allowed.join(",") };
        let mut lines = vec![
            format!("observer-cell: {}", self.version),
            format!(
                "ffmpeg: {}",
                match &self.ffmpeg {
                    Probe::NotFound => "missing".to_owned(),
                    other => other.to_string(),
                }
            ),
            format!("resolvers allowed (COLONY_RESOLVERS): {allowed}"),
        ];
        for c in &self.resolvers {
            let program = c.program.as_deref().unwrap_or("(no program)");
            let admission = match &c.admission {
                Admission::Allowed => "allowed".to_owned(),
                Admission::NotAllowed => "not allowed".to_owned(),
                Admission::RefusedOption(option) => format!("refused option {option}"),
                Admission::BadTemplate(reason) => format!("bad template: {reason}"),
            };
            let probe = c.probe.as_ref().map_or_else(String::new, |p| format!(", {p}"));
            lines.push(format!(
                "{} {}: `{}` ({}) runs {program}: {admission}{probe}",
                c.platform, c.kind, c.template, c.variable
            ));
        }
        lines
    }
}

/// The program a template runs: its first word.
pub fn program_of(template: &str) -> Result<String, String> {
    let words = shell_words::split(template).map_err(|e| e.to_string())?;
    words.into_iter().next().ok_or_else(|| "it names no program".to_owned())
}

/// Check one template against the allow-list, as a channel's resolve would.
pub fn admit(
    resolvers: &Resolvers,
    platform: Platform,
    kind: Kind,
    variable: &'static str,
    template: &str,
) -> ResolverCheck {
    let (program, admission) = match program_of(template) {
        Err(reason) => (None, Admission::BadTemplate(reason)),
        Ok(program) => {
            let admission = match resolvers.command_for(template, SAMPLE_URL, Some("somechannel")) {
                Ok(_) => Admission::Allowed,
                Err(SourceError::NotAllowed { .. }) => Admission::NotAllowed,
                Err(SourceError::RefusedOption { option }) => Admission::RefusedOption(option),
                Err(other) => Admission::BadTemplate(other.to_string()),
            };
            (Some(program), admission)
        }
    };
    ResolverCheck { platform, kind, variable, template: redact_template(template), program, admission, probe: None }
}

/// Option names whose value is likely a credential (an OAuth header, a token).
const SECRET_OPTION_HINTS: &[&str] = &["auth", "token", "header", "cookie", "password", "passwd", "secret", "key"];

/// A template as it may be printed: URLs masked, and the value of any option
/// that looks like it carries a credential replaced by `***`.
pub fn redact_template(template: &str) -> String {
    let Ok(words) = shell_words::split(template) else {
        return colony::config::redact_text(template);
    };
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        name.starts_with('-') && SECRET_OPTION_HINTS.iter().any(|h| name.contains(h))
    };
    let mut shown = Vec::with_capacity(words.len());
    let mut mask_next = false;
    for word in words {
        if std::mem::take(&mut mask_next) && !word.starts_with('-') {
            shown.push("***".to_owned());
            continue;
        }
        match word.split_once('=') {
            Some((name, _)) if secret(name) => shown.push(format!("{name}=***")),
            None if secret(&word) => {
                mask_next = true;
                shown.push(word);
            }
            // A URL with a placeholder reads as written, not percent-encoded.
            _ => shown.push(
                colony::config::redact_text(&word).replace("%7Bhandle%7D", "{handle}").replace("%7Burl%7D", "{url}"),
            ),
        }
    }
    // Quote only what needs it to read back as one word: `{url}` stays as written.
    let quoted: Vec<String> = shown
        .into_iter()
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
                shell_words::quote(&w).into_owned()
            } else {
                w
            }
        })
        .collect();
    quoted.join(" ")
}

/// The version line from a program's output: the first line that is not
/// blank, from stdout or else stderr, trimmed and shortened.
pub fn version_line(stdout: &[u8], stderr: &[u8]) -> Option<String> {
    let first = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).lines().map(str::trim).find(|l| !l.is_empty()).map(|l| l.to_owned())
    };
    first(stdout).or_else(|| first(stderr)).map(|l| l.chars().take(VERSION_LINE_MAX).collect())
}

/// Read a pipe to its end, keeping at most [`PROBE_OUTPUT_CAP`] bytes.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(PROBE_OUTPUT_CAP).read_to_end(&mut buf).await;
    }
    buf
}

/// Run `program version_flag` without a shell and take its version line.
pub async fn probe(program: &str, version_flag: &str, timeout: Duration) -> Probe {
    let spawned = tokio::process::Command::new(program)
        .arg(version_flag)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::NotFound,
        Err(e) => return Probe::Unrunnable(e.to_string()),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
        (out, err, child.wait().await)
    };
    let Ok((out, err, status)) = tokio::time::timeout(timeout, run).await else {
        return Probe::TimedOut;
    };
    match (status, version_line(&out, &err)) {
        (Err(e), _) => Probe::Unrunnable(e.to_string()),
        (Ok(status), Some(line)) if status.success() => Probe::Version(line),
        (Ok(status), Some(line)) => Probe::NoVersion(format!("{status}: {line}")),
        (Ok(status), None) => Probe::NoVersion(format!("{status}, printed nothing")),
    }
}

/// Check this host: ffmpeg, and every platform's live and VOD resolver as
/// the environment configures them. Each distinct program runs once.
pub async fn run(resolvers: &Resolvers) -> Report {
    let mut checks = Vec::new();
    for platform in Platform::ALL {
        let (live_var, _) = platform.resolver_var();
        let (vod_var, _) = platform.vod_resolver_var();
        checks.push(admit(resolvers, platform, Kind::Live, live_var, &platform.resolver_template()));
        checks.push(admit(resolvers, platform, Kind::Vod, vod_var, &platform.vod_resolver_template()));
    }
    let mut programs: Vec<String> = checks.iter().filter_map(|c| c.program.clone()).collect();
    programs.sort();
    programs.dedup();
    let (ffmpeg, probes) = tokio::join!(
        probe("ffmpeg", "-version", PROBE_TIMEOUT),
        futures::future::join_all(programs.iter().map(|p| probe(p, "--version", PROBE_TIMEOUT)))
    );
    for check in &mut checks {
        check.probe =
            check.program.as_ref().and_then(|p| programs.iter().position(|q| q == p)).map(|i| probes[i].clone());
    }
    Report { version: env!("CARGO_PKG_VERSION"), ffmpeg, allowed: resolvers.resolvers.clone(), resolvers: checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_first_word() {
        assert_eq!(program_of("streamlink --stream-url {url} best").unwrap(), "streamlink");
        assert_eq!(program_of("'/opt/my resolver/bin/sl' {url}").unwrap(), "/opt/my resolver/bin/sl");
        assert!(program_of("   ").is_err());
        assert!(program_of("streamlink 'unclosed {url}").is_err());
    }

    #[test]
    fn the_version_is_the_first_line_that_says_something() {
        assert_eq!(version_line(b"\n  streamlink 8.6.3  \nmore\n", b"").as_deref(), Some("streamlink 8.6.3"));
        assert_eq!(version_line(b"", b"tool 1.2\n").as_deref(), Some("tool 1.2"));
        assert_eq!(version_line(b" \n", b"\n"), None);
        let long = "v".repeat(1000);
        assert_eq!(version_line(long.as_bytes(), b"").unwrap().len(), VERSION_LINE_MAX);
    }

    #[test]
    fn the_allow_list_decides_as_a_resolve_would() {
        let sl = "streamlink --stream-url {url} best";
        let check = |allowed: &[&str], template| {
            admit(&Resolvers::allowing(allowed), Platform::Twitch, Kind::Live, "COLONY_RESOLVER_TWITCH", template)
                .admission
        };
        assert_eq!(check(&["streamlink", "yt-dlp"], sl), Admission::Allowed);
        assert_eq!(check(&["yt-dlp"], sl), Admission::NotAllowed);
        assert_eq!(check(&[], sl), Admission::NotAllowed);
        assert_eq!(
            check(&["streamlink"], "streamlink --player vlc {url} best"),
            Admission::RefusedOption("--player".into())
        );
        assert!(matches!(check(&["streamlink"], "streamlink 'open"), Admission::BadTemplate(_)));
    }

    #[test]
    fn credentials_in_a_template_are_not_printed() {
        let shown = redact_template(
            "streamlink --twitch-api-header 'Authorization=OAuth abc123' --http-header=Cookie=x {url} best",
        );
        assert!(!shown.contains("abc123") && !shown.contains("Cookie=x"), "{shown}");
        assert_eq!(shown, "streamlink --twitch-api-header *** --http-header=*** {url} best");
        let shown = redact_template("yt-dlp --get-url https://user:pw@proxy.example/?token=t {url}");
        assert!(!shown.contains("pw@") && !shown.contains("token=t"), "{shown}");
    }

    fn live(program: &str, admission: Admission, probe: Probe) -> ResolverCheck {
        ResolverCheck {
            platform: Platform::Twitch,
            kind: Kind::Live,
            variable: "COLONY_RESOLVER_TWITCH",
            template: format!("{program} {{url}}"),
            program: Some(program.into()),
            admission,
            probe: Some(probe),
        }
    }

    fn report(resolvers: Vec<ResolverCheck>) -> Report {
        Report { version: "0", ffmpeg: Probe::NotFound, allowed: vec![], resolvers }
    }

    #[test]
    fn only_live_resolvers_that_cannot_run_are_problems() {
        let fine = live("streamlink", Admission::Allowed, Probe::Version("streamlink 8.6.3".into()));
        let old = live("streamlink", Admission::Allowed, Probe::NoVersion("exit status: 2".into()));
        let vod = ResolverCheck { kind: Kind::Vod, ..live("yt-dlp", Admission::NotAllowed, Probe::NotFound) };
        assert_eq!(report(vec![fine, old, vod]).problems(), vec![]);

        let missing = live("streamlink", Admission::NotAllowed, Probe::NotFound);
        let kick = ResolverCheck { platform: Platform::Kick, ..missing.clone() };
        let refused = live("yt-dlp", Admission::RefusedOption("--exec".into()), Probe::Version("1".into()));
        assert_eq!(
            report(vec![missing, kick, refused]).problems(),
            vec![
                Problem::NotAllowed { program: "streamlink".into() },
                Problem::NotFound { program: "streamlink".into() },
                Problem::RefusedOption { variable: "COLONY_RESOLVER_TWITCH", option: "--exec".into() },
            ]
        );
    }

    #[test]
    fn every_check_gets_a_line() {
        let r = report(vec![live("streamlink", Admission::NotAllowed, Probe::NotFound)]);
        let lines = r.lines();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "ffmpeg: missing");
        assert!(lines[3].ends_with("runs streamlink: not allowed, not found on PATH"), "{}", lines[3]);
    }

    #[tokio::test]
    async fn a_probe_tells_missing_from_present() {
        assert_eq!(probe("colony-no-such-program", "--version", PROBE_TIMEOUT).await, Probe::NotFound);
        assert!(matches!(probe("sh", "--version", PROBE_TIMEOUT).await, Probe::Version(_) | Probe::NoVersion(_)));
        assert_eq!(probe("sleep", "5", Duration::from_millis(100)).await, Probe::TimedOut);
    }
}
