//! The harvest cell: a queue worker for the work that can wait.
//!
//! [`work_once`] claims one job, runs it while a side task heartbeats its
//! lease (carrying progress), and completes or fails it, fenced on
//! `(id, attempt)`. [`run`] wraps it in `--concurrency` loops that exit after
//! `--idle-exit` with nothing to do, or at once when the queue is empty with
//! `--drain`. On SIGTERM nothing new is claimed; running jobs get a deadline,
//! then go back to the queue without spending an attempt.

mod archive_tier;
pub mod export;
mod media;
pub mod reencode;
mod repair;
pub mod thumbnails;
mod vod_download;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::hls::HlsClient;
use crate::queue::{FailOutcome, Failure, Job, JobWaker, KindFilter, Queue, QueueError};
use crate::storage::ObjectStore;

/// Job kinds this build can run. A cell never claims a kind it cannot do.
pub const SUPPORTED_KINDS: &[&str] = &["vod_download", "reencode", "repair", "export", "thumbnails", "archive_tier"];

#[derive(Debug, Clone, clap::Args)]
pub struct HarvestArgs {
    /// Job kinds to take, comma-separated. Default: every kind this build runs.
    #[arg(long, env = "HARVEST_KINDS", value_delimiter = ',', value_name = "KINDS")]
    pub kinds: Vec<String>,

    /// Jobs run at once.
    #[arg(long, env = "HARVEST_CONCURRENCY", default_value_t = 2, value_name = "N")]
    pub concurrency: usize,

    /// Exit after this long with nothing to do.
    #[arg(long, env = "HARVEST_IDLE_EXIT", default_value = "2m", value_name = "DURATION")]
    pub idle_exit: humantime::Duration,

    /// Work until the queue has nothing ready, then exit.
    #[arg(long, env = "HARVEST_DRAIN")]
    pub drain: bool,

    /// Lease length; heartbeats renew it every third of it.
    #[arg(long, env = "HARVEST_LEASE", default_value = "60s", value_name = "DURATION")]
    pub lease: humantime::Duration,

    /// On SIGTERM: how long running jobs may take before they are handed back.
    #[arg(long, env = "HARVEST_SHUTDOWN_DEADLINE", default_value = "30s", value_name = "DURATION")]
    pub shutdown_deadline: humantime::Duration,

    /// Longest wait between queue polls when no notification arrives.
    #[arg(long, env = "HARVEST_POLL", default_value = "5s", value_name = "DURATION")]
    pub poll: humantime::Duration,

    /// Segments a VOD download fetches at once.
    #[arg(long, env = "HARVEST_DOWNLOAD_CONCURRENCY", default_value_t = 8, value_name = "N")]
    pub download_concurrency: usize,

    /// Timeout for one HTTP request.
    #[arg(long, env = "HARVEST_FETCH_TIMEOUT", default_value = "30s", value_name = "DURATION")]
    pub fetch_timeout: humantime::Duration,

    #[command(flatten)]
    pub limits: crate::hls::FetchLimits,

    #[command(flatten)]
    pub resolvers: crate::channel::Resolvers,
}

impl HarvestArgs {
    /// The kinds to claim, refusing kinds this build cannot run.
    pub fn kind_filter(&self) -> Result<KindFilter, String> {
        if self.kinds.is_empty() {
            return Ok(KindFilter::Only(SUPPORTED_KINDS.iter().map(|k| k.to_string()).collect()));
        }
        for kind in &self.kinds {
            if !SUPPORTED_KINDS.contains(&kind.as_str()) {
                return Err(format!("this build cannot run '{kind}' jobs; it runs: {}", SUPPORTED_KINDS.join(", ")));
            }
        }
        Ok(KindFilter::Only(self.kinds.clone()))
    }
}

/// Everything a job needs, injected.
#[derive(Clone)]
pub struct Ctx {
    pub queue: Queue,
    pub store: Arc<dyn ObjectStore>,
    pub hls: HlsClient,
    pub worker: String,
    pub kinds: KindFilter,
    pub args: HarvestArgs,
}

/// Why a job failed, which decides retry or dead.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Will never succeed (a VOD that answers 404, media ffmpeg cannot decode).
    #[error("{0}")]
    Permanent(String),
    /// Worth another attempt after a backoff (timeouts, 5xx, storage hiccups).
    #[error("{0}")]
    Transient(String),
}

impl JobError {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        JobError::Transient(e.to_string())
    }

    pub fn permanent(e: impl std::fmt::Display) -> Self {
        JobError::Permanent(e.to_string())
    }
}

impl From<crate::recording::PublishError> for JobError {
    fn from(e: crate::recording::PublishError) -> Self {
        if e.is_transient() {
            JobError::transient(crate::error_chain(&e))
        } else {
            JobError::permanent(crate::error_chain(&e))
        }
    }
}

/// Progress a running job reports; the heartbeat writes the latest value.
#[derive(Clone, Default)]
pub struct ProgressSink(Arc<Mutex<Option<Value>>>);

impl ProgressSink {
    pub fn set(&self, value: Value) {
        *self.0.lock().unwrap() = Some(value);
    }
    fn take(&self) -> Option<Value> {
        self.0.lock().unwrap().take()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A job ran; how it ended.
    Did { job: i64, kind: String, result: JobResult },
    /// Nothing ready.
    Idle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Succeeded,
    WillRetry,
    Dead,
    /// The lease was lost or the job cancelled: someone else owns it now.
    Abandoned,
    /// Handed back at shutdown without spending an attempt.
    HandedBack,
}

/// Claim and run one job.
pub async fn work_once(ctx: &Ctx, stop: &CancellationToken) -> Result<Outcome, QueueError> {
    let Some(job) = ctx.queue.claim(&ctx.worker, &ctx.kinds, 1, ctx.args.lease.into()).await?.pop() else {
        return Ok(Outcome::Idle);
    };
    let span = tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempt);
    let result = run_claimed(ctx, &job, stop).instrument(span).await?;
    Ok(Outcome::Did { job: job.id, kind: job.kind, result })
}

async fn run_claimed(ctx: &Ctx, job: &Job, stop: &CancellationToken) -> Result<JobResult, QueueError> {
    info!("job started");
    let progress = ProgressSink::default();
    let lease = job.lease();
    let lost = CancellationToken::new();
    let heartbeat = {
        let (queue, progress, lost, every, extend) = (
            ctx.queue.clone(),
            progress.clone(),
            lost.clone(),
            Duration::from(ctx.args.lease) / 3,
            ctx.args.lease.into(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match queue.heartbeat(lease, extend, progress.take().as_ref()).await {
                    Ok(()) => {}
                    Err(QueueError::Db(e)) => warn!(error = %e, "heartbeat failed; will retry"),
                    Err(e) => {
                        warn!(error = %e, "job lease lost; stopping it");
                        lost.cancel();
                        return;
                    }
                }
            }
        })
    };
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(ctx.args.shutdown_deadline.into()).await;
    };
    let outcome = tokio::select! {
        r = execute(ctx, job, &progress) => Some(r),
        _ = lost.cancelled() => None,
        _ = deadline => {
            heartbeat.abort();
            info!("shutdown deadline passed; handing the job back");
            return match ctx.queue.give_back(lease).await {
                Ok(()) => Ok(JobResult::HandedBack),
                Err(QueueError::Db(e)) => Err(QueueError::Db(e)),
                Err(_) => Ok(JobResult::Abandoned),
            };
        }
    };
    heartbeat.abort();
    if let Some(last) = progress.take() {
        let _ = ctx.queue.heartbeat(lease, ctx.args.lease.into(), Some(&last)).await;
    }
    let fenced = |r: Result<JobResult, QueueError>| match r {
        Err(QueueError::LostLease { .. } | QueueError::Cancelled { .. }) => Ok(JobResult::Abandoned),
        other => other,
    };
    match outcome {
        None => Ok(JobResult::Abandoned),
        Some(Ok(())) => {
            info!("job succeeded");
            fenced(ctx.queue.complete(lease).await.map(|_| JobResult::Succeeded))
        }
        Some(Err(e)) => {
            let failure = match e {
                JobError::Permanent(_) => Failure::Permanent,
                JobError::Transient(_) => Failure::Transient,
            };
            let result = ctx.queue.fail(lease, &e.to_string(), failure).await.map(|o| match o {
                FailOutcome::Dead => JobResult::Dead,
                FailOutcome::RetryAt(_) => JobResult::WillRetry,
            });
            warn!(error = %e, ?failure, ?result, "job failed");
            fenced(result)
        }
    }
}

/// Run a job's handler. A panic inside it fails that job, permanently, and
/// never takes down the cell's other jobs.
async fn execute(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    use futures::FutureExt;
    let handler: futures::future::BoxFuture<'_, Result<(), JobError>> = Box::pin(dispatch(ctx, job, progress));
    std::panic::AssertUnwindSafe(handler)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(JobError::Permanent("the job's handler panicked; see the cell's log".into())))
}

async fn dispatch(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    match job.kind.as_str() {
        "vod_download" => vod_download::run(ctx, job, progress).await,
        "reencode" => reencode::run(ctx, job, progress).await,
        "export" => export::run(ctx, job, progress).await,
        "thumbnails" => thumbnails::run(ctx, job, progress).await,
        "repair" => repair::run(ctx, job, progress).await,
        "archive_tier" => archive_tier::run(ctx, job, progress).await,
        other => Err(JobError::Permanent(format!("this build has no handler for '{other}' jobs"))),
    }
}

/// Work until idle for `--idle-exit`, drained (`--drain`), or stopped.
pub async fn run(ctx: Ctx, stop: CancellationToken) -> Result<u64, QueueError> {
    let last_activity = Arc::new(Mutex::new(Instant::now()));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.concurrency.max(1) {
        let (ctx, stop, last_activity) = (ctx.clone(), stop.clone(), last_activity.clone());
        loops.spawn(async move {
            let mut waker = JobWaker::new(ctx.queue.pool()).await;
            let mut done = 0u64;
            while !stop.is_cancelled() {
                let outcome = match work_once(&ctx, &stop).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        // Postgres away for a moment is no reason to leave:
                        // back off and try again (idle time keeps counting).
                        warn!(error = %format!("{:#}", anyhow::Error::from(e)), "queue unavailable; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from(ctx.args.poll)) => {}
                        }
                        if last_activity.lock().unwrap().elapsed() >= Duration::from(ctx.args.idle_exit) {
                            break;
                        }
                        continue;
                    }
                };
                match outcome {
                    Outcome::Did { .. } => {
                        done += 1;
                        *last_activity.lock().unwrap() = Instant::now();
                    }
                    Outcome::Idle => {
                        // Cheap and idempotent: put back jobs of workers that died.
                        for r in ctx.queue.rescue_expired().await.unwrap_or_default() {
                            info!(job = r.id, worker = ?r.attempted_by, "rescued a job whose lease expired");
                        }
                        if ctx.args.drain {
                            break;
                        }
                        if last_activity.lock().unwrap().elapsed() >= Duration::from(ctx.args.idle_exit) {
                            break;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = waker.wait(ctx.args.poll.into()) => {}
                        }
                    }
                }
            }
            Ok::<u64, QueueError>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = loops.join_next().await {
        total += r.expect("worker loop panicked")?;
    }
    Ok(total)
}

/// Record this cell in the cells table (the mothership may have already).
pub async fn register(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cells (id, kind, backend, state, last_heartbeat, host, version)
         VALUES ($1, 'harvest', 'manual', 'running', now(), $2, $3)
         ON CONFLICT (id) DO UPDATE SET state = 'running', last_heartbeat = now(), host = EXCLUDED.host, version = EXCLUDED.version",
    )
    .bind(cell_id)
    .bind(crate::hostname())
    .bind(crate::VERSION)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Keep the cell row's heartbeat fresh so the mothership counts this cell
/// in the pool; runs until the task is dropped.
pub async fn heartbeat_cell(pool: sqlx::PgPool, cell_id: uuid::Uuid, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let beat = sqlx::query(
            "UPDATE cells SET last_heartbeat = now() WHERE id = $1 AND state IN ('starting', 'running', 'stopping')",
        )
        .bind(cell_id)
        .execute(&pool)
        .await;
        if let Err(e) = beat {
            warn!(error = %e, "cell heartbeat failed; retrying at the next interval");
        }
    }
}

/// The cell is leaving of its own accord.
pub async fn mark_exited(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cells SET state = 'exited', exited_at = now(), exit_code = 0 WHERE id = $1")
        .bind(cell_id)
        .execute(pool)
        .await
        .map(|_| ())
}
