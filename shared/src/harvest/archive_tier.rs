//! `archive_tier`: move finished recordings older than an age to a cold
//! storage class, in place (an S3 CopyObject per object, so keys and the
//! ledger stay valid). Args: `{"older_than": "30d", "storage_class":
//! "GLACIER_IR"}`, or `{"recording_id": N, "storage_class": ...}`.

use std::time::Duration;

use serde_json::json;

use super::{Ctx, JobError, ProgressSink};
use crate::queue::Job;
use crate::storage::{ObjectKey, StorageError};

pub async fn run(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let class = job.args.get("storage_class").and_then(|c| c.as_str()).unwrap_or("GLACIER_IR").to_owned();
    let recordings: Vec<(i64, String)> = match job.args.get("recording_id").and_then(|r| r.as_i64()) {
        Some(id) => sqlx::query_as("SELECT id, storage_prefix FROM recordings WHERE id = $1 AND state IN ('complete', 'interrupted', 'failed')")
            .bind(id)
            .fetch_all(pool)
            .await,
        None => {
            let age = job.args.get("older_than").and_then(|a| a.as_str()).unwrap_or("30d");
            let age: Duration = humantime::parse_duration(age).map_err(|e| JobError::Permanent(format!("older_than '{age}': {e}")))?;
            sqlx::query_as(
                "SELECT id, storage_prefix FROM recordings
                  WHERE state IN ('complete', 'interrupted', 'failed') AND ended_at < now() - make_interval(secs => $1)
                    AND storage_class IS DISTINCT FROM $2
                  ORDER BY id",
            )
            .bind(age.as_secs_f64())
            .bind(&class)
            .fetch_all(pool)
            .await
        }
    }
    .map_err(JobError::transient)?;
    let mut moved = 0u64;
    for (i, (id, prefix)) in recordings.iter().enumerate() {
        let prefix = ObjectKey::parse(prefix).map_err(JobError::permanent)?;
        for object in ctx.store.list(Some(&prefix)).await.map_err(JobError::transient)? {
            if object.storage_class.as_deref() == Some(class.as_str()) {
                continue;
            }
            ctx.store.set_storage_class(&object.key, &class).await.map_err(|e| match e {
                StorageError::Unsupported { .. } => JobError::Permanent(format!("{e}; archive_tier needs S3 storage")),
                e if e.is_transient() => JobError::Transient(format!("{:#}", anyhow::Error::from(e))),
                e => JobError::Permanent(format!("{:#}", anyhow::Error::from(e))),
            })?;
            moved += 1;
        }
        sqlx::query("UPDATE recordings SET storage_class = $2 WHERE id = $1")
            .bind(id)
            .bind(&class)
            .execute(pool)
            .await
            .map_err(JobError::transient)?;
        progress.set(json!({ "recordings_done": i + 1, "recordings_total": recordings.len(), "objects_moved": moved }));
    }
    tracing::info!(recordings = recordings.len(), objects = moved, %class, "recordings tiered");
    Ok(())
}
