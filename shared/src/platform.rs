//! Streaming platforms a channel can live on: Twitch, YouTube and Kick.
//!
//! A channel added by its page URL (`https://www.twitch.tv/NAME`,
//! `https://www.youtube.com/@handle`, `https://www.youtube.com/channel/UC…`,
//! `https://kick.com/NAME`) or by `--platform P --login NAME` names its
//! platform and its handle there. Live detection then asks the platform's
//! API in batches (`mothership/src/platform/`), and the observer turns the
//! channel page into its HLS URL with the platform's resolver profile
//! (`COLONY_RESOLVER_TWITCH`, …), the allow-listed streamlink or yt-dlp.
//! A URL on any other host is a plain HLS source, as before.

use url::Url;

pub use colony_vocab::{Platform, UnknownPlatform};

/// How a channel is known on its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handle {
    /// Its login or handle (`twitch.tv/NAME`, `youtube.com/@NAME`, `kick.com/NAME`).
    Name(String),
    /// Its immutable id, where the URL gives one (`youtube.com/channel/UC…`).
    Id(String),
}

/// A channel on a platform, as recognised from a URL or flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformChannel {
    pub platform: Platform,
    pub handle: Handle,
}

impl PlatformChannel {
    /// A login Colony can use for it: the handle, lowercased, with `.` as `-`.
    pub fn suggested_login(&self) -> String {
        let raw = match &self.handle {
            Handle::Name(n) => n.as_str(),
            Handle::Id(id) => id.as_str(),
        };
        raw.to_ascii_lowercase().replace('.', "-")
    }

    /// The handle as stored (`channels.platform_handle`), and the platform id when known.
    pub fn stored(&self) -> (Option<String>, Option<String>) {
        match &self.handle {
            Handle::Name(n) => (Some(n.clone()), None),
            Handle::Id(id) => (None, Some(id.clone())),
        }
    }

    pub fn page_url(&self) -> String {
        match (self.platform, &self.handle) {
            (Platform::Twitch, Handle::Name(name)) => format!("https://www.twitch.tv/{name}"),
            (Platform::Kick, Handle::Name(name)) => format!("https://kick.com/{name}"),
            (Platform::YouTube, Handle::Name(name)) => format!("https://www.youtube.com/@{name}/live"),
            (Platform::YouTube, Handle::Id(id)) => format!("https://www.youtube.com/channel/{id}/live"),
            // Twitch and Kick channels are only ever known by name here.
            (Platform::Twitch, Handle::Id(id)) => format!("https://www.twitch.tv/{id}"),
            (Platform::Kick, Handle::Id(id)) => format!("https://kick.com/{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    UnknownPlatform(#[from] UnknownPlatform),
    #[error("'{handle}' is not a valid {platform} channel name: {rule}")]
    BadHandle { platform: Platform, handle: String, rule: &'static str },
    #[error("{url} is a {platform} page but not a channel's: {hint}")]
    NotAChannel { platform: Platform, url: String, hint: &'static str },
}

impl crate::exit::Classify for PlatformError {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Config
    }
}

/// Check a handle against the platform's own rules.
pub fn handle(platform: Platform, raw: &str) -> Result<Handle, PlatformError> {
    let raw = raw.trim().trim_start_matches('@');
    let bad = |rule| PlatformError::BadHandle { platform, handle: raw.chars().take(60).collect(), rule };
    let chars_ok = |extra: &[char]| raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c));
    match platform {
        // Twitch logins: 4-25 of letters, digits and '_' (older ones may be shorter).
        Platform::Twitch if (1..=25).contains(&raw.len()) && chars_ok(&[]) && !raw.starts_with('_') => {
            Ok(Handle::Name(raw.to_ascii_lowercase()))
        }
        Platform::Twitch => Err(bad("1-25 of letters, digits and '_', not starting with '_'")),
        // YouTube handles: 3-30 of letters, digits, '_', '-' and '.'.
        Platform::YouTube if raw.starts_with("UC") && raw.len() == 24 && chars_ok(&['-']) => {
            Ok(Handle::Id(raw.to_owned()))
        }
        Platform::YouTube if (3..=30).contains(&raw.len()) && chars_ok(&['-', '.']) => {
            Ok(Handle::Name(raw.to_ascii_lowercase()))
        }
        Platform::YouTube => Err(bad("a handle of 3-30 letters, digits, '_', '-' and '.', or a UC… channel id")),
        // Kick slugs: letters, digits, '_' and '-'.
        Platform::Kick if (1..=64).contains(&raw.len()) && chars_ok(&['-']) => {
            Ok(Handle::Name(raw.to_ascii_lowercase()))
        }
        Platform::Kick => Err(bad("1-64 of letters, digits, '_' and '-'")),
    }
}

/// Twitch paths that are pages of the site, not channels.
const TWITCH_NOT_CHANNELS: &[&str] =
    &["directory", "videos", "settings", "subscriptions", "inventory", "wallet", "downloads", "search", "p", "jobs"];
/// Kick paths that are pages of the site, not channels.
const KICK_NOT_CHANNELS: &[&str] = &["categories", "browse", "following", "search", "video", "clips", "dashboard"];

/// The platform channel a URL names; None for a URL on another host (a
/// plain HLS source). A platform URL that is not a channel page is an
/// error that says what to use instead.
pub fn recognise(url: &Url) -> Result<Option<PlatformChannel>, PlatformError> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_prefix("www.").or_else(|| host.strip_prefix("m.")).unwrap_or(&host);
    let Some(platform) = Platform::ALL.into_iter().find(|p| p.page_host() == host) else {
        return Ok(None);
    };
    let segments: Vec<&str> = url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    let not_a_channel =
        |hint| PlatformError::NotAChannel { platform, url: crate::config::redact_source_url(url.as_str()), hint };
    let handle = match (platform, segments.as_slice()) {
        (Platform::Twitch, ["videos", ..]) => {
            return Err(not_a_channel("a VOD; download it with `mothership job enqueue vod-download`"));
        }
        (Platform::Twitch, [name]) if !TWITCH_NOT_CHANNELS.contains(name) => handle(platform, name)?,
        (Platform::Twitch, _) => return Err(not_a_channel("use https://www.twitch.tv/NAME")),
        (Platform::YouTube, [at, rest @ ..]) if at.starts_with('@') && rest.len() <= 1 => handle(platform, at)?,
        (Platform::YouTube, ["channel", id, rest @ ..]) if rest.len() <= 1 => {
            let h = handle(platform, id)?;
            if !matches!(h, Handle::Id(_)) {
                return Err(not_a_channel("a channel id starts with UC and has 24 characters"));
            }
            h
        }
        (Platform::YouTube, ["watch", ..]) => {
            return Err(not_a_channel("a video; download it with `mothership job enqueue vod-download`"));
        }
        (Platform::YouTube, _) => {
            return Err(not_a_channel("use https://www.youtube.com/@handle or https://www.youtube.com/channel/UC…"));
        }
        (Platform::Kick, [name]) if !KICK_NOT_CHANNELS.contains(name) => handle(platform, name)?,
        (Platform::Kick, _) => return Err(not_a_channel("use https://kick.com/NAME")),
    };
    Ok(Some(PlatformChannel { platform, handle }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(url: &str) -> Result<Option<PlatformChannel>, PlatformError> {
        recognise(&Url::parse(url).unwrap())
    }

    fn name(platform: Platform, n: &str) -> Option<PlatformChannel> {
        Some(PlatformChannel { platform, handle: Handle::Name(n.into()) })
    }

    #[test]
    fn channel_pages_are_recognised() {
        assert_eq!(rec("https://www.twitch.tv/SomeStreamer").unwrap(), name(Platform::Twitch, "somestreamer"));
        assert_eq!(rec("https://twitch.tv/some_streamer/").unwrap(), name(Platform::Twitch, "some_streamer"));
        assert_eq!(rec("https://m.twitch.tv/abc").unwrap(), name(Platform::Twitch, "abc"));
        assert_eq!(rec("https://www.youtube.com/@Some.Handle").unwrap(), name(Platform::YouTube, "some.handle"));
        assert_eq!(rec("https://www.youtube.com/@handle/live").unwrap(), name(Platform::YouTube, "handle"));
        assert_eq!(
            rec("https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv").unwrap(),
            Some(PlatformChannel {
                platform: Platform::YouTube,
                handle: Handle::Id("UCabcdefghijklmnopqrstuv".into())
            })
        );
        assert_eq!(rec("https://kick.com/xqc").unwrap(), name(Platform::Kick, "xqc"));
        assert_eq!(rec("https://cdn.example.com/live/index.m3u8").unwrap(), None);
    }

    #[test]
    fn platform_pages_that_are_not_channels_say_what_to_use() {
        for bad in [
            "https://www.twitch.tv/videos/123456",
            "https://www.twitch.tv/directory",
            "https://www.twitch.tv/a/b/c",
            "https://www.twitch.tv/",
            "https://www.youtube.com/watch?v=abc",
            "https://www.youtube.com/channel/notanid",
            "https://www.youtube.com/",
            "https://kick.com/categories",
            "https://www.twitch.tv/has-a-dash",
        ] {
            let e = rec(bad).unwrap_err();
            assert!(matches!(e, PlatformError::NotAChannel { .. } | PlatformError::BadHandle { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn logins_follow_the_handle() {
        let c = rec("https://www.youtube.com/@Some.Handle").unwrap().unwrap();
        assert_eq!(c.suggested_login(), "some-handle");
        assert!(crate::channel::Login::parse(&c.suggested_login()).is_ok());
        assert_eq!(c.page_url(), "https://www.youtube.com/@some.handle/live");
        assert_eq!("Twitch".parse::<Platform>(), Ok(Platform::Twitch));
        assert!("myspace".parse::<Platform>().is_err());
    }
}
