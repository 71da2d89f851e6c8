//! `observer-cell --check`: what an image or host would run, before any
//! recording depends on it. A cell resolves a channel by running a resolver
//! profile of its host (`COLONY_RESOLVER_TWITCH`, `COLONY_RESOLVER_<NAME>`),
//! and only a program on the host's allow-list (`COLONY_RESOLVERS`), with
//! options on that program's own allow-list, may run; a missing streamlink,
//! a forgotten allow-list or a refused option otherwise shows up only when a
//! channel goes live. The check needs no assignment and no database.
//!
//! [`admit`] and [`Report::problems`] are pure; [`run`] adds what only running
//! the programs can tell (are they on PATH, which version).

use std::fmt;
use std::time::Duration;

use colony::resolver::{Origin, ResolverError, Resolvers, Target, profiles, redact_template};
use serde::Serialize;

/// How long a program may take to print its version.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a program's output that is read: a version is one line.
const PROBE_OUTPUT_CAP: u64 = 16 * 1024;
/// Longest version line shown.
const VERSION_LINE_MAX: usize = 200;
/// A URL to check a template with: `Resolvers::command` wants a real one.
const SAMPLE_URL: &str = "https://example.com/channel";

/// Whether the allow-list lets a template run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Admission {
    Allowed,
    NotAllowed,
    /// An option its program's allow-list lacks (or a form of it that is refused).
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

/// One resolver profile on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolverCheck {
    /// The profile's name, as channels and jobs store it.
    pub profile: String,
    /// The variable that defines (or would override) its template.
    pub variable: String,
    /// Whether the template is the built-in default.
    pub default: bool,
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
    BadTemplate { variable: String, reason: String },
    RefusedOption { variable: String, option: String },
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
    /// profiles (`*_vod`) are shown but not required: the observer never
    /// runs them.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for check in self.resolvers.iter().filter(|c| !c.profile.ends_with("_vod")) {
            let program = check.program.clone().unwrap_or_default();
            let mut found = match &check.admission {
                Admission::Allowed => vec![],
                Admission::NotAllowed => vec![Problem::NotAllowed { program: program.clone() }],
                Admission::RefusedOption(option) => {
                    vec![Problem::RefusedOption { variable: check.variable.clone(), option: option.clone() }]
                }
                Admission::BadTemplate(reason) => {
                    vec![Problem::BadTemplate { variable: check.variable.clone(), reason: reason.clone() }]
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
            let from = if c.default { format!("default; {} overrides", c.variable) } else { c.variable.clone() };
            lines.push(format!("profile {}: `{}` ({from}) runs {program}: {admission}{probe}", c.profile, c.template));
        }
        lines
    }
}

/// The program a template runs: its first word.
pub fn program_of(template: &str) -> Result<String, String> {
    let words = shell_words::split(template).map_err(|e| e.to_string())?;
    words.into_iter().next().ok_or_else(|| "it names no program".to_owned())
}

/// Check one profile's template against the allow-lists, as a channel's resolve would.
pub fn admit(resolvers: &Resolvers, profile: &str, variable: String, default: bool, template: &str) -> ResolverCheck {
    let (program, admission) = match program_of(template) {
        Err(reason) => (None, Admission::BadTemplate(reason)),
        Ok(program) => {
            let target = Target { url: SAMPLE_URL, handle: Some("somechannel") };
            let admission = match resolvers.command(template, target) {
                Ok(_) => Admission::Allowed,
                Err(ResolverError::NotAllowed { .. }) => Admission::NotAllowed,
                Err(ResolverError::RefusedOption { option, why, .. }) => {
                    Admission::RefusedOption(format!("{option} ({why})"))
                }
                Err(other) => Admission::BadTemplate(other.to_string()),
            };
            (Some(program), admission)
        }
    };
    ResolverCheck {
        profile: profile.to_owned(),
        variable,
        default,
        template: redact_template(template),
        program,
        admission,
        probe: None,
    }
}

/// The version line from a program's output: the first line that is not
/// blank, from stdout or else stderr, trimmed and shortened.
pub fn version_line(stdout: &[u8], stderr: &[u8]) -> Option<String> {
    let first = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).lines().map(str::trim).find(|l| !l.is_empty()).map(|l| l.to_owned())
    };
    first(stdout).or_else(|| first(stderr)).map(|l| l.chars().take(VERSION_LINE_MAX).collect())
}

/// Run `program version_flag` without a shell and take its version line.
pub async fn probe(program: &str, version_flag: &str, timeout: Duration) -> Probe {
    let spawned = colony::child::scrub(&mut tokio::process::Command::new(program))
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
        use colony::child::read_capped;
        let (out, err) = tokio::join!(read_capped(stdout, PROBE_OUTPUT_CAP), read_capped(stderr, PROBE_OUTPUT_CAP));
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

/// Check this host: ffmpeg, and every resolver profile as the environment
/// configures it (the platforms' defaults and each `COLONY_RESOLVER_<NAME>`).
/// Each distinct program runs once.
pub async fn run(resolvers: &Resolvers) -> Report {
    let mut checks = Vec::new();
    for (name, template, origin) in profiles() {
        let (variable, default) = match origin {
            Origin::Variable(var) => (var, false),
            Origin::Default => (name.variable(), true),
        };
        checks.push(admit(resolvers, name.as_str(), variable, default, &template));
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
            admit(&Resolvers::allowing(allowed), "twitch", "COLONY_RESOLVER_TWITCH".into(), false, template).admission
        };
        assert_eq!(check(&["streamlink", "yt-dlp"], sl), Admission::Allowed);
        assert_eq!(check(&["yt-dlp"], sl), Admission::NotAllowed);
        assert_eq!(check(&[], sl), Admission::NotAllowed);
        assert!(matches!(
            check(&["streamlink"], "streamlink --player vlc {url} best"),
            Admission::RefusedOption(o) if o.starts_with("--player ")
        ));
        assert!(matches!(check(&["streamlink"], "streamlink 'open"), Admission::BadTemplate(_)));
    }

    fn live(program: &str, admission: Admission, probe: Probe) -> ResolverCheck {
        ResolverCheck {
            profile: "twitch".into(),
            variable: "COLONY_RESOLVER_TWITCH".into(),
            default: false,
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
        let vod =
            ResolverCheck { profile: "twitch_vod".into(), ..live("yt-dlp", Admission::NotAllowed, Probe::NotFound) };
        assert_eq!(report(vec![fine, old, vod]).problems(), vec![]);

        let missing = live("streamlink", Admission::NotAllowed, Probe::NotFound);
        let kick = ResolverCheck { profile: "kick".into(), ..missing.clone() };
        let refused = live("yt-dlp", Admission::RefusedOption("--exec".into()), Probe::Version("1".into()));
        assert_eq!(
            report(vec![missing, kick, refused]).problems(),
            vec![
                Problem::NotAllowed { program: "streamlink".into() },
                Problem::NotFound { program: "streamlink".into() },
                Problem::RefusedOption { variable: "COLONY_RESOLVER_TWITCH".into(), option: "--exec".into() },
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
