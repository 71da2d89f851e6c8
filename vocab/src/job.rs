//! The kinds of job the queue carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every kind of job this build knows. Adding one is a compile error
/// everywhere that must handle it: the harvest cell's dispatch, the typed
/// arguments (`colony::queue::JobArgs`) and the attempts below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    VodDownload,
    Reencode,
    Repair,
    Export,
    Thumbnails,
    ArchiveTier,
    Webhook,
    ChatExport,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::VodDownload,
        JobKind::Reencode,
        JobKind::Repair,
        JobKind::Export,
        JobKind::Thumbnails,
        JobKind::ArchiveTier,
        JobKind::Webhook,
        JobKind::ChatExport,
    ];

    /// The name stored in `jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::VodDownload => "vod_download",
            JobKind::Reencode => "reencode",
            JobKind::Repair => "repair",
            JobKind::Export => "export",
            JobKind::Thumbnails => "thumbnails",
            JobKind::ArchiveTier => "archive_tier",
            JobKind::Webhook => "webhook",
            JobKind::ChatExport => "chat_export",
        }
    }

    /// Attempts before a job of this kind goes dead. A webhook delivery
    /// gets many, so its backoff spans hours of a receiver being down.
    pub fn max_attempts(self) -> i32 {
        match self {
            JobKind::Webhook => 12,
            JobKind::VodDownload
            | JobKind::Reencode
            | JobKind::Repair
            | JobKind::Export
            | JobKind::Thumbnails
            | JobKind::ArchiveTier
            | JobKind::ChatExport => 5,
        }
    }

    /// Every kind, comma-separated, as the CLI spells them (`vod-download`).
    pub fn cli_list() -> String {
        JobKind::ALL.iter().map(|k| k.as_str().replace('_', "-")).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a job kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{}' is not a job kind; use one of {}", .0.escape_debug(), JobKind::cli_list())]
pub struct UnknownKind(pub String);

impl FromStr for JobKind {
    type Err = UnknownKind;

    /// Accepts the stored name and the CLI's spelling: `vod_download` or `vod-download`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().replace('-', "_");
        JobKind::ALL.into_iter().find(|k| k.as_str() == name).ok_or_else(|| UnknownKind(s.to_owned()))
    }
}
