//! The job handlers, one module per kind, and what each shares with the
//! worker that runs it: [`JobError`], whose class decides retry or dead, and
//! the [`ProgressSink`] the lease's heartbeat reads. The ffmpeg jobs share
//! `media.rs`.

pub(crate) mod archive_tier;
pub mod chat_export;
pub mod export;
mod media;
pub mod reencode;
pub(crate) mod repair;
pub(crate) mod thumbnails;
pub(crate) mod vod_download;

use std::sync::{Arc, Mutex};

use serde_json::Value;

use colony::exit::{Classify, ErrorClass};
use colony::queue::Failure;

/// Why a job failed, which decides retry or dead.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Will never succeed (a VOD that answers 404, media ffmpeg cannot decode).
    #[error("{}", colony::error_chain(.0.as_ref()))]
    Permanent(Cause),
    /// Worth another attempt after a backoff (timeouts, 5xx, storage hiccups).
    #[error("{}", colony::error_chain(.0.as_ref()))]
    Transient(Cause),
    /// The job is no longer this worker's (a fenced write was refused):
    /// stop, and report nothing.
    #[error("the job's lease was lost: {}", colony::error_chain(.0.as_ref()))]
    Fenced(Cause),
}

/// Why a job failed: the error itself, with its chain (a message is one too).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl JobError {
    pub fn transient(e: impl Into<Cause>) -> Self {
        JobError::Transient(e.into())
    }

    pub fn permanent(e: impl Into<Cause>) -> Self {
        JobError::Permanent(e.into())
    }

    pub fn fenced(e: impl Into<Cause>) -> Self {
        JobError::Fenced(e.into())
    }

    /// By what the error says it is. Inside a job, a configuration problem
    /// (a resolver the host does not allow) will not pass by retrying: permanent.
    pub fn classified<E: Classify + std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        match e.class() {
            ErrorClass::Config | ErrorClass::Permanent => JobError::Permanent(Box::new(e)),
            ErrorClass::Transient => JobError::Transient(Box::new(e)),
            ErrorClass::Fenced => JobError::Fenced(Box::new(e)),
        }
    }

    /// How the queue records this failure, by the error's class: what will
    /// never succeed goes dead at once, the rest is retried after a backoff.
    /// `None` for a job that is no longer this worker's: nothing is recorded.
    pub fn failure(&self) -> Option<Failure> {
        (self.class() != ErrorClass::Fenced).then(|| Failure::of(self))
    }

    /// The error the job failed with.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            JobError::Permanent(c) | JobError::Transient(c) | JobError::Fenced(c) => c.as_ref(),
        }
    }
}

impl Classify for JobError {
    fn class(&self) -> ErrorClass {
        match self {
            JobError::Permanent(_) => ErrorClass::Permanent,
            JobError::Transient(_) => ErrorClass::Transient,
            JobError::Fenced(_) => ErrorClass::Fenced,
        }
    }
}

impl From<colony::recording::PublishError> for JobError {
    fn from(e: colony::recording::PublishError) -> Self {
        JobError::classified(e)
    }
}

/// Progress a running job reports; the heartbeat writes the latest value.
#[derive(Clone, Default)]
pub struct ProgressSink(Arc<Mutex<Option<Value>>>);

impl ProgressSink {
    pub fn set(&self, value: Value) {
        *self.lock() = Some(value);
    }
    pub(crate) fn take(&self) -> Option<Value> {
        self.lock().take()
    }
    /// Put back a value that could not be written, unless a newer one came.
    pub(crate) fn keep(&self, value: Option<Value>) {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = value;
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Value>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
