//! The streaming platforms Colony knows. How a channel is found on one (its
//! page URL, its handle) and how its resolver is chosen live in the shared
//! crate (`colony::platform`, `colony::resolver`); this is only the name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A streaming platform Colony knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Twitch,
    YouTube,
    Kick,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Twitch, Platform::YouTube, Platform::Kick];

    /// The name stored in `channels.platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Twitch => "twitch",
            Platform::YouTube => "youtube",
            Platform::Kick => "kick",
        }
    }

    /// The platform's own spelling, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Twitch => "Twitch",
            Platform::YouTube => "YouTube",
            Platform::Kick => "Kick",
        }
    }

    /// The site its channel pages are on.
    pub fn page_host(self) -> &'static str {
        match self {
            Platform::Twitch => "twitch.tv",
            Platform::YouTube => "youtube.com",
            Platform::Kick => "kick.com",
        }
    }

    /// The hosts a platform's playlists send segments from (its CDNs),
    /// allowed for its channels besides the resolved playlist's own host.
    pub fn cdn_hosts(self) -> &'static [&'static str] {
        match self {
            Platform::Twitch => &["*.ttvnw.net", "*.jtvnw.net"],
            Platform::YouTube => &["*.googlevideo.com", "*.youtube.com"],
            Platform::Kick => &["*.live-video.net", "*.kick.com"],
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a platform (the first 40 characters of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a platform Colony knows; use twitch, youtube or kick")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    /// Any case, surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownPlatform(s.chars().take(40).collect()))
    }
}
