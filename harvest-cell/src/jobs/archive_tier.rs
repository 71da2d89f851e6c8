//! `archive_tier`: move finished recordings older than an age to a cold
//! storage class, in place (an S3 copy per object, in parts above the
//! multipart threshold, so keys and the ledger stay valid). A recording that
//! fails is recorded (`recordings.error`) and passed over: the others go on,
//! and it is tried again last. Args: `{"older_than": "30d", "storage_class":
//! "GLACIER_IR"}`, or `{"recording_id": N, "storage_class": ...}`.

use std::time::Duration;

use serde_json::json;

use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::exit::{Classify, ErrorClass};
use colony::queue::ArchiveTierArgs;
use colony::storage::{ObjectKey, StorageError};

pub async fn run(ctx: &Ctx, args: &ArchiveTierArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let class = args.storage_class.clone().unwrap_or_else(|| "GLACIER_IR".to_owned());
    let recordings: Vec<(i64, String)> = match args.recording_id {
        Some(id) => sqlx::query_as("SELECT id, storage_prefix FROM recordings WHERE id = $1 AND state IN ('complete', 'interrupted', 'failed')")
            .bind(id)
            .fetch_all(pool)
            .await,
        None => {
            let age = args.older_than.as_deref().unwrap_or("30d");
            let age: Duration = humantime::parse_duration(age).map_err(|e| JobError::permanent(format!("older_than '{age}': {e}")))?;
            // A recording that failed to tier before goes last, so it never
            // holds up the others.
            sqlx::query_as(
                "SELECT id, storage_prefix FROM recordings
                  WHERE state IN ('complete', 'interrupted', 'failed') AND ended_at < now() - make_interval(secs => $1)
                    AND storage_class IS DISTINCT FROM $2
                  ORDER BY error IS NOT NULL AND error LIKE 'archive_tier:%', id",
            )
            .bind(age.as_secs_f64())
            .bind(&class)
            .fetch_all(pool)
            .await
        }
    }
    .map_err(JobError::transient)?;
    let (mut moved, mut failed) = (0u64, Vec::new());
    for (i, (id, prefix)) in recordings.iter().enumerate() {
        match tier(ctx, prefix, &class).await {
            Ok(n) => {
                moved += n;
                colony::recording::rows::set_storage_class(pool, *id, &class).await.map_err(JobError::transient)?;
            }
            Err(Failure::Recording(why)) => {
                tracing::warn!(recording = id, error = %why, "tiering a recording failed; going on with the others");
                let _ = colony::recording::rows::note_error(pool, *id, &format!("archive_tier: {why}")).await;
                failed.push(format!("recording {id}: {why}"));
            }
            Err(Failure::Job(e)) => return Err(e),
        }
        progress.set(json!({
            "recordings_done": i + 1, "recordings_total": recordings.len(), "objects_moved": moved, "failed": failed.len()
        }));
    }
    tracing::info!(recordings = recordings.len(), objects = moved, failed = failed.len(), %class, "recordings tiered");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(JobError::transient(format!(
            "{} of {} recording(s) could not be tiered: {}",
            failed.len(),
            recordings.len(),
            failed.join("; ")
        )))
    }
}

/// Why one recording could not be tiered.
enum Failure {
    /// This recording only (a bad prefix, an object that would not copy):
    /// recorded on it, and the job goes on with the others.
    Recording(String),
    /// Nothing can be tiered here (the store has no storage classes).
    Job(JobError),
}

impl Classify for Failure {
    fn class(&self) -> ErrorClass {
        match self {
            // The job fails, to be tried again, once the others are done.
            Failure::Recording(_) => ErrorClass::Transient,
            Failure::Job(e) => e.class(),
        }
    }
}

/// Move every object of one recording to `class`; returns how many moved.
async fn tier(ctx: &Ctx, prefix: &str, class: &str) -> Result<u64, Failure> {
    let prefix = ObjectKey::parse(prefix).map_err(|e| Failure::Recording(format!("storage prefix: {e}")))?;
    let mut moved = 0;
    let objects = ctx.store.list(Some(&prefix)).await.map_err(|e| Failure::Recording(colony::error_chain(&e)))?;
    for object in objects {
        if object.storage_class.as_deref() == Some(class) {
            continue;
        }
        ctx.store.set_storage_class(&object.key, object.size, class).await.map_err(|e| match e {
            StorageError::Unsupported { .. } => {
                Failure::Job(JobError::permanent(format!("{e}; archive_tier needs S3 storage")))
            }
            e => Failure::Recording(colony::error_chain(&e)),
        })?;
        moved += 1;
    }
    Ok(moved)
}
