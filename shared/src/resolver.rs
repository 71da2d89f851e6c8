//! Resolvers: programs such as streamlink and yt-dlp that turn a channel's
//! page into the HLS URL to record.
//!
//! A resolver is code, so it never comes from data. A channel row or a job's
//! arguments name a **profile** (`twitch`, `mycdn`); the profile's template
//! comes from the configuration of the host that runs it
//! (`COLONY_RESOLVER_<NAME>`, with defaults for the platforms). A row that
//! names a profile this host lacks fails with a line saying which variable
//! to set.
//!
//! Every template, wherever it came from, is also checked before it runs:
//!
//! - its program must be on the host's allow-list (`COLONY_RESOLVERS`);
//! - every option must be one that program's allow-list names, written out
//!   exactly: no abbreviation (`--netrc-c` for `--netrc-cmd`), no bundled
//!   short flags (`-gf`), no value glued to a short flag, no `@argfile`,
//!   and no option value that could be read as another option;
//! - a program without an allow-list of its own takes no options at all;
//! - each known program runs with its configuration files and plugins
//!   switched off (`--no-config`, `--ignore-config`, …), so a file in the
//!   cell's home cannot add what the template may not;
//! - the URL put in place of `{url}` is an http(s) URL and the handle put in
//!   place of `{handle}` is letters, digits, `_`, `-` and `.`: neither can
//!   become an option.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A resolver profile's name: 1-32 of `a-z 0-9 _`, starting with a letter.
/// It is what a channel row or a job stores, and it names the host variable
/// `COLONY_RESOLVER_<NAME>` that holds the template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileName(String);

impl TryFrom<String> for ProfileName {
    type Error = ResolverError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ProfileName> for String {
    fn from(p: ProfileName) -> String {
        p.0
    }
}

impl ProfileName {
    pub fn parse(raw: &str) -> Result<Self, ResolverError> {
        let ok = (1..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ResolverError::BadProfileName(raw.chars().take(60).collect::<String>().escape_debug().to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The profile a platform's live channels run (`COLONY_RESOLVER_TWITCH`, …).
    pub fn live(platform: crate::platform::Platform) -> Self {
        Self(platform.as_str().to_owned())
    }

    /// The profile a platform's past broadcasts run (`COLONY_RESOLVER_TWITCH_VOD`, …).
    pub fn vod(platform: crate::platform::Platform) -> Self {
        Self(format!("{}_vod", platform.as_str()))
    }

    /// The host variable that holds this profile's template.
    pub fn variable(&self) -> String {
        format!("{PROFILE_PREFIX}{}", self.0.to_ascii_uppercase())
    }

    /// The profile a variable name defines, if it is one.
    pub fn from_variable(var: &str) -> Option<Self> {
        let name = var.strip_prefix(PROFILE_PREFIX)?;
        Self::parse(&name.to_ascii_lowercase()).ok()
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = ResolverError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The prefix of the variables that define profiles.
pub const PROFILE_PREFIX: &str = "COLONY_RESOLVER_";

/// The profiles every host has without configuration, and their templates:
/// each platform's live resolver, and its past broadcasts'.
pub const DEFAULT_PROFILES: &[(&str, &str)] = &[
    ("twitch", "streamlink --stream-url {url} best"),
    ("youtube", "yt-dlp --get-url --format best {url}"),
    ("kick", "streamlink --stream-url {url} best"),
    ("twitch_vod", "yt-dlp --get-url --format best {url}"),
    ("youtube_vod", "yt-dlp --get-url --format best {url}"),
    ("kick_vod", "yt-dlp --get-url --format best {url}"),
];

/// Where a profile's template came from on this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The variable named here.
    Variable(String),
    /// The built-in default.
    Default,
}

/// The template a profile has on this host: its variable, the older name of
/// a platform's VOD variable (`COLONY_VOD_RESOLVER_TWITCH`), or the default.
pub fn template_in(env: &dyn Fn(&str) -> Option<String>, profile: &ProfileName) -> Option<(String, Origin)> {
    let set = |var: &str| env(var).filter(|t| !t.trim().is_empty()).map(|t| (t, Origin::Variable(var.to_owned())));
    let legacy =
        profile.as_str().strip_suffix("_vod").map(|p| format!("COLONY_VOD_RESOLVER_{}", p.to_ascii_uppercase()));
    set(&profile.variable()).or_else(|| legacy.as_deref().and_then(set)).or_else(|| {
        DEFAULT_PROFILES
            .iter()
            .find(|(name, _)| *name == profile.as_str())
            .map(|(_, template)| ((*template).to_owned(), Origin::Default))
    })
}

/// [`template_in`] this process's environment.
pub fn template(profile: &ProfileName) -> Option<(String, Origin)> {
    template_in(&|var| std::env::var(var).ok(), profile)
}

/// Every profile this host has: the defaults and each `COLONY_RESOLVER_<NAME>`.
pub fn profiles() -> Vec<(ProfileName, String, Origin)> {
    let mut names: Vec<ProfileName> =
        DEFAULT_PROFILES.iter().filter_map(|(name, _)| ProfileName::parse(name).ok()).collect();
    for (var, _) in std::env::vars() {
        if let Some(name) = ProfileName::from_variable(&var)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names.into_iter().filter_map(|name| template(&name).map(|(template, origin)| (name, template, origin))).collect()
}

/// Does an option take a value?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    Flag,
    Value,
    /// A value that must start with one of these (an extractor's own namespace).
    ValueIn(&'static [&'static str]),
}
use Arity::{Flag, Value, ValueIn};

/// What a known program may be given, and what it is always given.
struct Program {
    name: &'static str,
    /// Options allowed, by exact spelling (a short alias is its own entry).
    options: &'static [(&'static str, Arity)],
    /// Put before the template's own arguments: no configuration files, no plugins.
    always: &'static [&'static str],
}

/// streamlink 8.6: options that pick a stream and talk to the site. Its
/// argparse accepts unambiguous abbreviations (`--logfi=`), bundles (`-Qj`)
/// and `@file` arguments anywhere, an option's value may start with `-`, and
/// it reads `~/.config/streamlink/config*` and sideloads plugins from
/// `~/.local/share/streamlink/plugins`: the exact-name rule and
/// [`Program::always`] shut all of that out. Left out on purpose: every
/// option that writes (`--logfile`, `--output`, `--record`), runs
/// (`--player`, `--ffmpeg-ffmpeg`, `--webbrowser-executable`) or reads files
/// (`--config`, `--plugin-dir`, `--http-cookies-file`), and `--http-proxy`.
const STREAMLINK: Program = Program {
    name: "streamlink",
    options: &[
        ("--stream-url", Flag),
        ("--url", Value),
        ("--default-stream", Value),
        ("--json", Flag),
        ("-j", Flag),
        ("--quiet", Flag),
        ("-Q", Flag),
        ("--loglevel", Value),
        ("-l", Value),
        ("--locale", Value),
        ("--ipv4", Flag),
        ("-4", Flag),
        ("--ipv6", Flag),
        ("-6", Flag),
        ("--http-header", Value),
        ("--http-cookie", Value),
        ("--http-query-param", Value),
        ("--http-timeout", Value),
        ("--stream-types", Value),
        ("--stream-sorting-excludes", Value),
        ("--stream-timeout", Value),
        ("--retry-streams", Value),
        ("--retry-max", Value),
        ("--retry-open", Value),
        ("--hls-live-edge", Value),
        ("--twitch-api-header", Value),
        ("--twitch-access-token-param", Value),
        ("--twitch-disable-ads", Flag),
        ("--twitch-low-latency", Flag),
        ("--twitch-supported-codecs", Value),
    ],
    always: &["--no-config", "--no-plugin-sideloading"],
};

/// yt-dlp 2026.10: options that pick a format and talk to the site. Its
/// optparse parser accepts abbreviated long options (`--exec-b`, `--netrc-c`),
/// bundled short flags (`-gf best`, `-gfbest`), reads config files from its
/// own directory, the home directory and /etc, and loads plugins from every
/// `sys.path` entry: the exact-name rule and [`Program::always`] shut that
/// out. Left out on purpose: everything that runs (`--exec`, `--netrc-cmd`,
/// `--downloader`, `--alias`), writes (`--output`, `--print-to-file`,
/// `--cookies`, which is written back), reads (`--batch-file`,
/// `--config-locations`, `--paths`) or changes where code comes from
/// (`--plugin-dirs`, `--remote-components`), and `--proxy`.
const YT_DLP: Program = Program {
    name: "yt-dlp",
    options: &[
        ("--get-url", Flag),
        ("-g", Flag),
        ("--format", Value),
        ("-f", Value),
        ("--format-sort", Value),
        ("-S", Value),
        ("--no-playlist", Flag),
        ("--playlist-items", Value),
        ("-I", Value),
        ("--live-from-start", Flag),
        ("--no-live-from-start", Flag),
        // `--add-header` is only an abbreviation of this.
        ("--add-headers", Value),
        ("--referer", Value),
        ("--user-agent", Value),
        ("--impersonate", Value),
        ("--wait-for-video", Value),
        ("--geo-bypass", Flag),
        // The built-in extractors' own arguments; not the plugin providers'
        // (`youtubepot-*`) or the challenge solver's (`youtube-ejs`, which
        // can fetch scripts).
        ("--extractor-args", ValueIn(&["youtube:", "youtubetab:", "twitch:", "generic:"])),
        ("--extractor-retries", Value),
        ("--socket-timeout", Value),
        ("--force-ipv4", Flag),
        ("-4", Flag),
        ("--force-ipv6", Flag),
        ("-6", Flag),
        ("--no-warnings", Flag),
        ("--quiet", Flag),
        ("-q", Flag),
        ("--simulate", Flag),
        ("-s", Flag),
        ("--skip-download", Flag),
        ("--dump-json", Flag),
        ("-j", Flag),
        // To standard output only (`--print-to-file` writes, and is not here).
        ("--print", Value),
        ("-O", Value),
    ],
    always: &["--ignore-config", "--no-plugin-dirs"],
};

const PROGRAMS: &[&Program] = &[&STREAMLINK, &YT_DLP];

/// The rules for a program, by the last part of its path.
fn program_rules(program: &str) -> Option<&'static Program> {
    let base = program.rsplit('/').next().unwrap_or(program);
    PROGRAMS.iter().copied().find(|p| p.name == base)
}

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("'{0}' is not a resolver profile name: use 1-32 of a-z, 0-9 and '_', starting with a letter")]
    BadProfileName(String),
    #[error(
        "resolver profile '{profile}' is not defined on this host: set {variable} to its command, e.g. \
             {variable}='yt-dlp --get-url {{url}}'"
    )]
    UnknownProfile { profile: String, variable: String },
    #[error("channel source URL '{0}' is not an http(s) URL")]
    BadUrl(String),
    #[error("resolver template is empty or cannot be split into words: {0}")]
    BadTemplate(String),
    #[error("resolver program `{program}` is not allowed on this host; add it to COLONY_RESOLVERS (now: {allowed})")]
    NotAllowed { program: String, allowed: String },
    #[error("resolver option `{option}` is refused for {program}: {why}")]
    RefusedOption { program: String, option: String, why: &'static str },
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

/// A resolver that is not allowed or not defined, or a template or URL that
/// cannot work, is the operator's to fix; a resolver that fails or says
/// nothing may do better next time.
impl crate::exit::Classify for ResolverError {
    fn class(&self) -> crate::exit::ErrorClass {
        use crate::exit::ErrorClass;
        match self {
            ResolverError::Spawn { .. } | ResolverError::Timeout { .. } | ResolverError::NoUrl { .. } => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Config,
        }
    }
}

fn refuse(program: &str, option: &str, why: &'static str) -> ResolverError {
    ResolverError::RefusedOption {
        program: program.chars().take(100).collect(),
        option: option.split('=').next().unwrap_or_default().chars().take(60).collect(),
        why,
    }
}

/// Check a template's words against its program's rules: every option
/// exact and allowed, every value and word plain. Pure.
pub fn check_words(program: &str, args: &[String]) -> Result<(), ResolverError> {
    let rules = program_rules(program);
    let mut args = args.iter();
    while let Some(word) = args.next() {
        if word.starts_with('@') {
            return Err(refuse(program, word, "an @file would be read as more arguments"));
        }
        if !word.starts_with('-') || word == "-" {
            continue;
        }
        let Some(rules) = rules else {
            return Err(refuse(program, word, "a program without an allow-list of its own takes no options"));
        };
        if word == "--" {
            return Err(refuse(program, word, "an end of options is not needed: {url} is never an option"));
        }
        let (name, glued) = match word.split_once('=') {
            Some((name, value)) if word.starts_with("--") => (name, Some(value)),
            _ => (word.as_str(), None),
        };
        let Some((_, arity)) = rules.options.iter().find(|(allowed, _)| *allowed == name) else {
            return Err(refuse(
                program,
                word,
                "not on its allow-list (exact option names only: no abbreviations or bundled short flags)",
            ));
        };
        let value = match (arity, glued) {
            (Flag, Some(_)) => return Err(refuse(program, word, "it takes no value")),
            (Flag, None) => continue,
            (_, Some(value)) => value,
            (_, None) => args.next().ok_or_else(|| refuse(program, word, "its value is missing"))?,
        };
        check_value(program, name, value)?;
        if let ValueIn(prefixes) = arity
            && !prefixes.iter().any(|p| value.starts_with(p))
        {
            return Err(refuse(program, word, "its value is not one of the namespaces it may take"));
        }
    }
    Ok(())
}

fn check_value(program: &str, option: &str, value: &str) -> Result<(), ResolverError> {
    if value.starts_with('-') || value.starts_with('@') {
        return Err(refuse(program, option, "its value would be read as an option or an @file"));
    }
    Ok(())
}

/// The programs a resolver may run on this host: the operator's allow-list,
/// `--resolvers` / `COLONY_RESOLVERS`, e.g. `streamlink,yt-dlp`. Empty (the
/// default) allows none.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Resolvers {
    /// Programs a resolver may run on this host, comma-separated, e.g.
    /// streamlink,yt-dlp. A template naming any other program is refused,
    /// and each program takes only the options of its own allow-list.
    /// Templates come from this host's COLONY_RESOLVER_<NAME> variables
    /// (a channel names the profile); default: none allowed.
    #[arg(long = "resolvers", env = "COLONY_RESOLVERS", value_delimiter = ',', value_name = "PROGRAMS")]
    pub resolvers: Vec<String>,
}

/// What a resolver is run for: the page URL, and a platform channel's handle.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub url: &'a str,
    pub handle: Option<&'a str>,
}

impl Resolvers {
    pub fn allowing(programs: &[&str]) -> Self {
        Self { resolvers: programs.iter().map(|p| p.to_string()).collect() }
    }

    fn allows(&self, program: &str) -> bool {
        self.resolvers.iter().any(|p| p.trim() == program)
    }

    /// The command a profile runs on this host for `target`.
    pub fn command_for_profile(
        &self,
        profile: &ProfileName,
        target: Target<'_>,
    ) -> Result<(String, Vec<String>), ResolverError> {
        let (template, _) = template(profile).ok_or_else(|| ResolverError::UnknownProfile {
            profile: profile.to_string(),
            variable: profile.variable(),
        })?;
        self.command(&template, target)
    }

    /// Check `template` and split it into a program and its arguments: the
    /// program's fixed options first, then the template's words with
    /// `{url}` and `{handle}` replaced (the URL appended when the template
    /// names neither).
    pub fn command(&self, template: &str, target: Target<'_>) -> Result<(String, Vec<String>), ResolverError> {
        let url = Url::parse(target.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ResolverError::BadUrl(crate::config::redact_source_url(target.url)))?;
        let words = shell_words::split(template).map_err(|e| ResolverError::BadTemplate(e.to_string()))?;
        let Some((program, args)) = words.split_first() else {
            return Err(ResolverError::BadTemplate("it names no program".into()));
        };
        if !self.allows(program) {
            let allowed = if self.resolvers.is_empty() { "unset".to_owned() } else { self.resolvers.join(",") };
            return Err(ResolverError::NotAllowed { program: program.chars().take(100).collect(), allowed });
        }
        check_words(program, args)?;
        // A handle is letters, digits, '_', '-' and '.': nothing a program could read as more.
        let handle = target
            .handle
            .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .filter(|h| !h.is_empty() && !h.starts_with('-'));
        if template.contains("{handle}") && handle.is_none() {
            return Err(ResolverError::BadTemplate("the template names {handle} but the channel has none".into()));
        }
        let mut out: Vec<String> =
            program_rules(program).map(|p| p.always.iter().map(|o| (*o).to_owned()).collect()).unwrap_or_default();
        out.extend(
            args.iter().map(|w| w.replace("{url}", url.as_str()).replace("{handle}", handle.unwrap_or_default())),
        );
        if !template.contains("{url}") && !template.contains("{handle}") {
            out.push(url.to_string());
        }
        Ok((program.clone(), out))
    }

    /// Run a profile for `target`, without a shell, and take the first line
    /// of its output that is an http(s) URL.
    pub async fn run_profile(
        &self,
        profile: &ProfileName,
        target: Target<'_>,
        timeout: Duration,
    ) -> Result<Url, ResolverError> {
        let (program, args) = self.command_for_profile(profile, target)?;
        run_command(&program, &args, timeout).await
    }
}

/// Most of a resolver's output that is read: it prints one URL.
const OUTPUT_CAP: u64 = 64 * 1024;

async fn run_command(program: &str, args: &[String], timeout: Duration) -> Result<Url, ResolverError> {
    let program = program.to_owned();
    let mut child = crate::child::scrub(&mut tokio::process::Command::new(&program))
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| ResolverError::Spawn { program: program.clone(), source })?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        use crate::child::read_capped;
        let (out, err) = tokio::join!(read_capped(stdout, OUTPUT_CAP), read_capped(stderr, OUTPUT_CAP));
        (out, err, child.wait().await)
    };
    let (out, err, status) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ResolverError::Timeout { program: program.clone(), timeout })?;
    let status = status.map_err(|source| ResolverError::Spawn { program: program.clone(), source })?;
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::trim)
        .find_map(|l| Url::parse(l).ok().filter(|u| matches!(u.scheme(), "http" | "https")))
        .ok_or_else(|| ResolverError::NoUrl {
            program: program.clone(),
            status: status.to_string(),
            stderr: crate::config::redact_text(String::from_utf8_lossy(&err).lines().last().unwrap_or_default())
                .chars()
                .take(200)
                .collect(),
        })
}

/// A template as it may be printed: the program, each option's name, and
/// `***` for every option value (headers, tokens and cookies live there);
/// plain words with URLs masked. Placeholders read as written.
pub fn redact_template(template: &str) -> String {
    let Ok(words) = shell_words::split(template) else {
        return "<a template that cannot be split into words>".to_owned();
    };
    let mut shown = Vec::with_capacity(words.len());
    let mut words = words.into_iter();
    if let Some(program) = words.next() {
        shown.push(program);
    }
    let mut mask_next = false;
    for word in words {
        if std::mem::take(&mut mask_next) && !word.starts_with('-') {
            shown.push("***".to_owned());
            continue;
        }
        if word.starts_with('-') {
            match word.split_once('=') {
                Some((name, _)) => shown.push(format!("{name}=***")),
                None => {
                    // The next word is this option's value unless it is an option itself
                    // or the option is a known flag.
                    let flag = PROGRAMS
                        .iter()
                        .flat_map(|p| p.options.iter())
                        .any(|(name, arity)| *name == word && matches!(arity, Flag));
                    mask_next = !flag;
                    shown.push(word);
                }
            }
            continue;
        }
        shown.push(crate::config::redact_text(&word).replace("%7Bhandle%7D", "{handle}").replace("%7Burl%7D", "{url}"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target<'_> {
        Target { url, handle: None }
    }

    #[test]
    fn profile_names_map_to_variables() {
        let p = ProfileName::parse("my_cdn2").unwrap();
        assert_eq!(p.variable(), "COLONY_RESOLVER_MY_CDN2");
        assert_eq!(ProfileName::from_variable("COLONY_RESOLVER_MY_CDN2"), Some(p));
        assert_eq!(ProfileName::from_variable("COLONY_RESOLVERS"), None);
        for bad in ["", "My", "a-b", "1a", "a b", "yt-dlp -g {url}", &"a".repeat(33)] {
            assert!(ProfileName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_come_from_the_host() {
        let env = |var: &str| match var {
            "COLONY_RESOLVER_MINE" => Some("printf '%s\\n' {url}".to_owned()),
            "COLONY_VOD_RESOLVER_TWITCH" => Some("yt-dlp -g {url}".to_owned()),
            "COLONY_RESOLVER_KICK" => Some("  ".to_owned()),
            _ => None,
        };
        let get = |name: &str| template_in(&env, &ProfileName::parse(name).unwrap());
        assert_eq!(get("mine").unwrap().1, Origin::Variable("COLONY_RESOLVER_MINE".into()));
        assert_eq!(
            get("twitch_vod").unwrap(),
            ("yt-dlp -g {url}".into(), Origin::Variable("COLONY_VOD_RESOLVER_TWITCH".into()))
        );
        assert_eq!(get("kick").unwrap(), ("streamlink --stream-url {url} best".into(), Origin::Default));
        assert_eq!(get("other"), None);
    }

    #[tokio::test]
    async fn resolver_output_is_parsed_without_a_shell() {
        let allowed = Resolvers::allowing(&["echo", "printf", "sh"]);
        let run = |template: &str, url: &str, timeout| {
            let (program, args) = allowed.command(template, target(url)).unwrap();
            async move { run_command(&program, &args, timeout).await }
        };
        // `echo` prints one line: "noise http://...": not a URL by itself.
        assert!(run("echo noise {url}/live.m3u8", "http://src.example", Duration::from_secs(5)).await.is_err());
        let url = run("printf '%s\\n' junk {url}", "https://src.example/x.m3u8", Duration::from_secs(5)).await.unwrap();
        assert_eq!(url.as_str(), "https://src.example/x.m3u8");
        let script = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script.path(), "sleep 5\n").unwrap();
        let slow = format!("sh {} {{url}}", script.path().display());
        let err = run(&slow, "http://src.example/", Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, ResolverError::Timeout { .. }), "{err}");
    }

    /// Defect: the block-list refused exact names only, and the real
    /// programs take abbreviations, bundles and @files. Seven templates
    /// that ran commands or wrote files on the old code, each refused now.
    #[test]
    fn abbreviated_bundled_and_file_options_are_refused() {
        let some = Resolvers::allowing(&["streamlink", "yt-dlp"]);
        for bad in [
            "yt-dlp --netrc-c 'touch /tmp/p' -g {url}",
            "yt-dlp --exec-b 'touch /tmp/p' -g {url}",
            "yt-dlp --outp /tmp/p -g {url}",
            "streamlink --logf /tmp/p --stream-url {url} best",
            "yt-dlp --config-loc /tmp/evil.conf -g {url}",
            "yt-dlp -go /tmp/p {url}",
            "yt-dlp -fo /tmp/p {url}",
            "streamlink @/tmp/args {url} best",
            "yt-dlp -g @/tmp/args {url}",
            "yt-dlp --format=best --exec id {url}",
            "yt-dlp -f -o {url}",
            "yt-dlp -fbest {url}",
            "yt-dlp --get-url=yes {url}",
            "streamlink --player 'sh -c id' {url} best",
            "yt-dlp -- {url}",
            "yt-dlp -f",
            "yt-dlp --add-header X:1 -g {url}",
            "yt-dlp --extractor-args youtube-ejs:repo=evil -g {url}",
            "yt-dlp --extractor-args=youtubepot-x:base_url=http://h -g {url}",
            "streamlink -Qj {url}",
            "streamlink --http-header @/tmp/args --stream-url {url}",
        ] {
            let err = some.command(bad, target("https://x.example/")).unwrap_err();
            assert!(matches!(err, ResolverError::RefusedOption { .. }), "{bad}: {err}");
        }
        // A program with no allow-list of its own takes no options at all.
        let printf = Resolvers::allowing(&["printf"]);
        assert!(printf.command("printf '%s\\n' {url}", target("https://x.example/")).is_ok());
        assert!(matches!(
            printf.command("printf -v x {url}", target("https://x.example/")),
            Err(ResolverError::RefusedOption { .. })
        ));
    }

    #[test]
    fn allowed_templates_get_their_programs_config_switched_off() {
        let some = Resolvers::allowing(&["streamlink", "yt-dlp", "/opt/rl/bin/yt-dlp"]);
        let (program, args) = some
            .command(
                "streamlink --twitch-api-header 'Authorization=OAuth x' --stream-url {url} best",
                target("https://twitch.tv/x"),
            )
            .unwrap();
        assert_eq!(program, "streamlink");
        assert_eq!(
            args,
            [
                "--no-config",
                "--no-plugin-sideloading",
                "--twitch-api-header",
                "Authorization=OAuth x",
                "--stream-url",
                "https://twitch.tv/x",
                "best"
            ]
        );
        let (_, args) = some.command("/opt/rl/bin/yt-dlp -g -f best {url}", target("https://v.example/1")).unwrap();
        assert_eq!(args, ["--ignore-config", "--no-plugin-dirs", "-g", "-f", "best", "https://v.example/1"]);
        let (_, args) = some
            .command(
                "yt-dlp --format=best --extractor-args youtube:player_client=web -O url {url}",
                target("https://v.example/1"),
            )
            .unwrap();
        assert_eq!(args[2..6], ["--format=best", "--extractor-args", "youtube:player_client=web", "-O"]);
    }

    #[test]
    fn only_allowed_programs_run_and_the_url_is_never_an_option() {
        let none = Resolvers::default();
        let err = none.command("streamlink --stream-url {url} best", target("https://twitch.tv/x")).unwrap_err();
        assert!(err.to_string().contains("COLONY_RESOLVERS (now: unset)"), "{err}");
        let some = Resolvers::allowing(&["streamlink", "yt-dlp"]);
        for bad in ["/bin/sh -c id", "sh -c id", "./streamlink {url}"] {
            assert!(matches!(some.command(bad, target("https://x.example/")), Err(ResolverError::NotAllowed { .. })));
        }
        for url in ["--exec=id", "-o/tmp/x", "file:///etc/passwd"] {
            assert!(matches!(some.command("yt-dlp -g {url}", target(url)), Err(ResolverError::BadUrl(_))), "{url}");
        }
    }

    #[test]
    fn a_platform_template_may_name_the_handle_instead_of_the_url() {
        let some = Resolvers::allowing(&["streamlink"]);
        let page = "https://www.twitch.tv/some_one";
        let t = |handle| Target { url: page, handle };
        let (_, args) = some
            .command("streamlink --stream-url http://src:8080/{handle}/live.m3u8 best", t(Some("some_one")))
            .unwrap();
        assert_eq!(args[2..], ["--stream-url", "http://src:8080/some_one/live.m3u8", "best"]);
        let (_, args) = some.command("streamlink --stream-url", t(Some("some_one"))).unwrap();
        assert_eq!(args.last().map(String::as_str), Some(page));
        for bad in [Some("--exec=id"), Some("a b"), None] {
            let err = some.command("streamlink {handle} best", t(bad)).unwrap_err();
            assert!(matches!(err, ResolverError::BadTemplate(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn credentials_in_a_template_are_not_printed() {
        let shown = redact_template(
            "streamlink --twitch-api-header 'Authorization=OAuth abc123' --http-header=Cookie=x --stream-url {url} best",
        );
        assert_eq!(shown, "streamlink --twitch-api-header *** --http-header=*** --stream-url {url} best");
        let shown = redact_template("yt-dlp --get-url https://user:pw@proxy.example/?token=t {url}");
        assert!(!shown.contains("pw@") && !shown.contains("token=t"), "{shown}");
        assert_eq!(redact_template("printf 'unclosed"), "<a template that cannot be split into words>");
    }
}
