//! The job kinds Colony runs and the arguments each one takes.
//!
//! [`JobKind`] is the one list of kinds: the harvest cell dispatches on it,
//! the admin CLI checks `job enqueue` against it, and `--kinds` is parsed
//! into it. [`JobArgs`] is the typed form of a job row's `args` column,
//! tagged by its kind, so a handler gets fields, not `args.get("url")`.
//! The queue itself stays generic: it stores any kind as text.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Job, NewJob};

pub use colony_vocab::{JobKind, UnknownKind};

/// A job's arguments, by kind. Unknown fields are ignored, so a row written
/// by a newer build still runs on an older one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args", rename_all = "snake_case")]
pub enum JobArgs {
    VodDownload(VodDownloadArgs),
    Reencode(ReencodeArgs),
    Repair(RecordingArgs),
    Export(RecordingArgs),
    Thumbnails(RecordingArgs),
    ArchiveTier(ArchiveTierArgs),
    Webhook(WebhookArgs),
    ChatExport(RecordingArgs),
}

/// `vod_download`: fetch one VOD into a recording of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VodDownloadArgs {
    /// The VOD's playlist (or, with `resolver`, its page).
    pub url: String,
    /// The channel by id, as `job enqueue` and `channel backfill` write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<i64>,
    /// The channel by login, for rows written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The resolver profile that turns `url` into a playlist (`twitch_vod`,
    /// or one of the host's `COLONY_RESOLVER_<NAME>`): a name, never a
    /// command; the harvest cell refuses anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<crate::resolver::ProfileName>,
    /// For a platform's past broadcast: the platform's id of the broadcast
    /// (shared with a live recording of it), and its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The live recording of the same broadcast, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_recording_id: Option<i64>,
}

/// `reencode`: an ABR ladder of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReencodeArgs {
    pub recording_id: i64,
    /// Rung heights; the default ladder without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Vec<u32>>,
}

/// `repair`, `export`, `thumbnails`, `chat_export`: one recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingArgs {
    pub recording_id: i64,
}

/// `archive_tier`: move finished recordings to a colder storage class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveTierArgs {
    /// One recording; without it, every recording older than `older_than`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<i64>,
    /// The S3 storage class (default GLACIER_IR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// How long ago a recording must have ended (default 30d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
}

/// `webhook`: deliver one event to one webhook. The URL and the secret stay
/// in the `webhooks` table (the row is read at delivery), so neither is in
/// the job's arguments, which `job list --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookArgs {
    pub hook_id: i64,
    /// Deterministic, e.g. `recording.completed:42`: the `webhook-id` header,
    /// the same on every attempt.
    pub event_id: String,
    pub event_type: String,
    /// The event as delivered: `{"type", "timestamp", "data"}`.
    pub payload: Value,
}

/// Arguments that do not fit their kind.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Kind(#[from] UnknownKind),
    #[error("the arguments of a {kind} job do not fit it: {source}")]
    Shape { kind: JobKind, source: serde_json::Error },
    #[error("the arguments of a {kind} job must be a JSON object")]
    NotAnObject { kind: JobKind },
    #[error("a vod_download job needs channel_id or channel")]
    NoChannel,
}

impl JobArgs {
    /// Read a job row's kind and arguments: untrusted, so every field is checked.
    pub fn parse(kind: &str, args: &Value) -> Result<JobArgs, ArgsError> {
        let kind: JobKind = kind.parse()?;
        if !args.is_object() {
            return Err(ArgsError::NotAnObject { kind });
        }
        let tagged = serde_json::json!({ "kind": kind, "args": args });
        let parsed: JobArgs = serde_json::from_value(tagged).map_err(|source| ArgsError::Shape { kind, source })?;
        if let JobArgs::VodDownload(VodDownloadArgs { channel_id: None, channel: None, .. }) = parsed {
            return Err(ArgsError::NoChannel);
        }
        Ok(parsed)
    }

    /// The arguments of a claimed job.
    pub fn of(job: &Job) -> Result<JobArgs, ArgsError> {
        Self::parse(&job.kind, &job.args)
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobArgs::VodDownload(_) => JobKind::VodDownload,
            JobArgs::Reencode(_) => JobKind::Reencode,
            JobArgs::Repair(_) => JobKind::Repair,
            JobArgs::Export(_) => JobKind::Export,
            JobArgs::Thumbnails(_) => JobKind::Thumbnails,
            JobArgs::ArchiveTier(_) => JobKind::ArchiveTier,
            JobArgs::Webhook(_) => JobKind::Webhook,
            JobArgs::ChatExport(_) => JobKind::ChatExport,
        }
    }

    /// The `args` column alone.
    pub fn to_value(&self) -> Value {
        let mut tagged = serde_json::to_value(self).unwrap_or(Value::Null);
        tagged.get_mut("args").map(Value::take).unwrap_or_else(|| Value::Object(Default::default()))
    }

    /// The work a recording's pipeline names (`channels.pipeline`), for
    /// that recording; None for a kind that is not about one recording.
    pub fn for_recording(kind: JobKind, recording_id: i64) -> Option<JobArgs> {
        let one = RecordingArgs { recording_id };
        Some(match kind {
            JobKind::Reencode => JobArgs::Reencode(ReencodeArgs { recording_id, ladder: None }),
            JobKind::Repair => JobArgs::Repair(one),
            JobKind::Export => JobArgs::Export(one),
            JobKind::Thumbnails => JobArgs::Thumbnails(one),
            JobKind::ChatExport => JobArgs::ChatExport(one),
            JobKind::ArchiveTier => JobArgs::ArchiveTier(ArchiveTierArgs {
                recording_id: Some(recording_id),
                storage_class: None,
                older_than: None,
            }),
            JobKind::VodDownload | JobKind::Webhook => return None,
        })
    }

    /// What makes queueing the same work twice a no-op while the first is
    /// queued, running or done: the recording a job works on, the URL a
    /// channel downloads, the event a webhook delivers. None: every job is new.
    pub fn unique_key(&self) -> Option<String> {
        let kind = self.kind();
        match self {
            JobArgs::Repair(a) | JobArgs::Export(a) | JobArgs::Thumbnails(a) | JobArgs::ChatExport(a) => {
                Some(format!("{kind}:recording:{}", a.recording_id))
            }
            // The default ladder once per recording; a ladder asked for by hand is new work.
            JobArgs::Reencode(a) => a.ladder.is_none().then(|| format!("{kind}:recording:{}", a.recording_id)),
            JobArgs::ArchiveTier(a) => a.recording_id.map(|id| format!("{kind}:recording:{id}")),
            JobArgs::VodDownload(a) => a.channel_id.map(|channel| format!("{kind}:{channel}:{}", a.url)),
            JobArgs::Webhook(a) => Some(format!("{kind}:{}:{}", a.hook_id, a.event_id)),
        }
    }

    /// A job for the queue with these arguments, its kind's attempts and
    /// its [`unique key`](Self::unique_key).
    pub fn job(&self) -> NewJob {
        let kind = self.kind();
        let job = NewJob::new(kind.as_str(), self.to_value()).max_attempts(kind.max_attempts());
        match self.unique_key() {
            Some(key) => job.unique_key(key),
            None => job,
        }
    }
}

/// A job row whose arguments do not fit will never run: permanent.
impl crate::exit::Classify for ArgsError {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_round_trips_through_its_name_and_the_cli_spelling() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
            assert_eq!(kind.as_str().replace('_', "-").parse::<JobKind>(), Ok(kind));
        }
        assert_eq!("nope".parse::<JobKind>(), Err(UnknownKind("nope".into())));
    }

    #[test]
    fn rows_parse_into_their_kinds_and_back() {
        let args = JobArgs::parse("vod_download", &json!({ "url": "http://x/v.m3u8", "channel_id": 3 })).unwrap();
        assert_eq!(args.kind(), JobKind::VodDownload);
        assert_eq!(args.to_value(), json!({ "url": "http://x/v.m3u8", "channel_id": 3 }));
        let args = JobArgs::parse("repair", &json!({ "recording_id": 7, "extra": true })).unwrap();
        assert_eq!(args, JobArgs::Repair(RecordingArgs { recording_id: 7 }));
        assert_eq!(args.job().kind, "repair");
    }

    #[test]
    fn bad_rows_are_refused_with_the_reason() {
        let e = JobArgs::parse("repair", &json!({})).unwrap_err();
        assert!(e.to_string().contains("recording_id"), "{e}");
        let e = JobArgs::parse("repair", &json!({ "recording_id": "7" })).unwrap_err();
        assert!(matches!(e, ArgsError::Shape { kind: JobKind::Repair, .. }), "{e}");
        assert!(matches!(JobArgs::parse("export", &json!([1])), Err(ArgsError::NotAnObject { .. })));
        assert!(matches!(JobArgs::parse("vod_download", &json!({ "url": "u" })), Err(ArgsError::NoChannel)));
        assert!(matches!(JobArgs::parse("k", &json!({})), Err(ArgsError::Kind(_))));
    }

    #[test]
    fn webhook_jobs_carry_their_event_and_many_attempts() {
        let row = json!({ "hook_id": 3, "event_id": "job.dead:9:1", "event_type": "job.dead", "payload": { "type": "job.dead" } });
        let args = JobArgs::parse("webhook", &row).unwrap();
        assert!(matches!(&args, JobArgs::Webhook(w) if w.hook_id == 3 && w.event_id == "job.dead:9:1"));
        assert_eq!(args.to_value(), row);
        let job = args.job();
        assert_eq!((job.kind.as_str(), job.max_attempts), ("webhook", 12));
        assert_eq!(JobArgs::Repair(RecordingArgs { recording_id: 1 }).job().max_attempts, 5);
    }

    #[test]
    fn a_job_is_keyed_by_what_it_works_on() {
        let key = |args: JobArgs| args.job().unique_key;
        assert_eq!(key(JobArgs::Export(RecordingArgs { recording_id: 4 })).as_deref(), Some("export:recording:4"));
        for kind in [JobKind::Reencode, JobKind::Repair, JobKind::Thumbnails, JobKind::ChatExport, JobKind::ArchiveTier]
        {
            let args = JobArgs::for_recording(kind, 7).unwrap();
            assert_eq!(args.to_value(), json!({ "recording_id": 7 }), "{kind}");
            assert_eq!(key(args), Some(format!("{kind}:recording:7")));
        }
        assert!(JobArgs::for_recording(JobKind::VodDownload, 7).is_none());
        assert!(JobArgs::for_recording(JobKind::Webhook, 7).is_none());
        let ladder = JobArgs::Reencode(ReencodeArgs { recording_id: 7, ladder: Some(vec![360]) });
        assert_eq!(key(ladder), None, "a ladder asked for by hand is new work");
        let all = JobArgs::ArchiveTier(ArchiveTierArgs { recording_id: None, storage_class: None, older_than: None });
        assert_eq!(key(all), None);
        let vod = JobArgs::VodDownload(VodDownloadArgs {
            url: "https://example.com/v.m3u8".into(),
            channel_id: Some(3),
            channel: None,
            resolver: None,
            stream_id: None,
            title: None,
            live_recording_id: None,
        });
        assert_eq!(key(vod).as_deref(), Some("vod_download:3:https://example.com/v.m3u8"));
    }

    #[test]
    fn chat_export_jobs_take_one_recording() {
        assert_eq!("chat-export".parse::<JobKind>(), Ok(JobKind::ChatExport));
        assert!(JobKind::cli_list().contains("chat-export"));
        let args = JobArgs::parse("chat_export", &json!({ "recording_id": 9 })).unwrap();
        assert_eq!(args, JobArgs::ChatExport(RecordingArgs { recording_id: 9 }));
        assert_eq!(args.to_value(), json!({ "recording_id": 9 }));
        let job = args.job();
        assert_eq!((job.kind.as_str(), job.max_attempts), ("chat_export", 5));
        assert!(matches!(
            JobArgs::parse("chat_export", &json!({})),
            Err(ArgsError::Shape { kind: JobKind::ChatExport, .. })
        ));
    }
}
