//! The worker loop: start reading here.
//!
//! [`work_once`] claims one job, runs it while a side task renews its lease
//! (carrying progress), and completes or fails it, fenced on the lease
//! generation. A worker fences itself: if it cannot renew the lease before
//! half of it has passed, it stops the job (and its ffmpeg) and reports
//! nothing, because another worker may take the job once the lease expires.
//! Each job has a per-kind timeout. [`work`] wraps it in `--concurrency`
//! loops that exit after `--idle-exit` with nothing to do, or at once when
//! the queue is empty with `--drain`. On SIGTERM nothing new is claimed;
//! running jobs get a deadline, then go back to the queue without spending
//! an attempt.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::HarvestArgs;
use crate::jobs::{self, JobError, ProgressSink};
use colony::exit::{Classify, ErrorClass};
use colony::hls::HlsClient;
use colony::queue::{FailOutcome, Job, JobArgs, JobWaker, KindFilter, Lease, Queue, QueueError};
use colony::storage::ObjectStore;

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

/// What one turn of a worker loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
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

/// Work until idle for `--idle-exit`, drained (`--drain`), or stopped;
/// returns how many jobs ran. The queue being away never ends it: each loop
/// backs off and tries again.
pub(crate) async fn work(ctx: Ctx, stop: CancellationToken) -> u64 {
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
                        if !ctx.args.stay && idle_for(&last_activity) >= Duration::from(ctx.args.idle_exit) {
                            break;
                        }
                        continue;
                    }
                };
                match outcome {
                    Turn::Did { .. } => {
                        done += 1;
                        *last_activity.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    }
                    Turn::Idle => {
                        // Cheap and idempotent: put back jobs of workers that died.
                        for r in answered(ctx.queue.rescue_expired()).await.unwrap_or_default() {
                            info!(job = r.id, worker = ?r.attempted_by, "rescued a job whose lease expired");
                        }
                        if ctx.args.drain {
                            break;
                        }
                        if !ctx.args.stay && idle_for(&last_activity) >= Duration::from(ctx.args.idle_exit) {
                            break;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = waker.wait(ctx.args.poll.into()) => {}
                        }
                    }
                }
            }
            done
        });
    }
    let mut total = 0;
    while let Some(r) = loops.join_next().await {
        total += r.expect("worker loop panicked");
    }
    total
}

/// How long since a loop last had work (a panic elsewhere cannot poison this).
fn idle_for(last_activity: &Mutex<Instant>) -> Duration {
    last_activity.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
}

/// Claim and run one job.
pub async fn work_once(ctx: &Ctx, stop: &CancellationToken) -> Result<Turn, QueueError> {
    let claim = ctx.queue.claim(&ctx.worker, &ctx.kinds, 1, ctx.args.lease.into());
    let Some(job) = answered(claim).await?.pop() else {
        return Ok(Turn::Idle);
    };
    let span = tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempt);
    let result = run_claimed(ctx, &job, stop).instrument(span).await?;
    Ok(Turn::Did { job: job.id, kind: job.kind, result })
}

/// The longest a queue query outside a job may go unanswered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// `query`, or [`QueueError::NoAnswer`] after [`QUERY_TIMEOUT`]: without a
/// bound, a connection a partition left half-open hangs the loop for good.
async fn answered<T>(query: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
    tokio::time::timeout(QUERY_TIMEOUT, query).await.unwrap_or(Err(QueueError::NoAnswer(QUERY_TIMEOUT)))
}

async fn run_claimed(ctx: &Ctx, job: &Job, stop: &CancellationToken) -> Result<JobResult, QueueError> {
    info!("job started");
    let progress = ProgressSink::default();
    let lease = job.lease();
    let lease_len: Duration = ctx.args.lease.into();
    let lost = CancellationToken::new();
    let renewing = tokio::spawn(keep_lease(ctx.queue.clone(), lease, lease_len, progress.clone(), lost.clone()));
    // A kind this build does not know fails at dispatch, under the default timeout.
    let timeout = job.known_kind().map_or(ctx.args.job_timeout.get(), |kind| ctx.args.timeout_for(kind));
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(ctx.args.shutdown_deadline.into()).await;
    };
    // Dropping the job's future (lease lost, shutdown) kills its ffmpeg.
    let outcome = tokio::select! {
        r = tokio::time::timeout(timeout, execute(ctx, job, &progress)) => Some(r.unwrap_or_else(|_| {
            Err(JobError::transient(format!(
                "the job ran longer than its timeout ({}; HARVEST_JOB_TIMEOUT, HARVEST_JOB_TIMEOUTS)",
                humantime::format_duration(timeout)
            )))
        })),
        _ = lost.cancelled() => None,
        _ = deadline => {
            renewing.abort();
            info!("shutdown deadline passed; handing the job back");
            return match answered(ctx.queue.give_back(lease)).await {
                Ok(()) => Ok(JobResult::HandedBack),
                Err(e) if e.class() == ErrorClass::Transient => Err(e),
                Err(_) => Ok(JobResult::Abandoned),
            };
        }
    };
    // The last progress goes with the outcome; the lease is still renewed
    // while the outcome is written.
    if let Some(last) = progress.take() {
        let _ = tokio::time::timeout(lease_len / 6, ctx.queue.heartbeat(lease, lease_len, Some(&last))).await;
    }
    // A job whose lease was lost, or whose fenced write was refused, is
    // another worker's now: nothing is recorded for it.
    let outcome = outcome.and_then(|r| match r {
        Ok(()) => Some(Ok(())),
        Err(e) => e.failure().map(|failure| Err((e, failure))),
    });
    let result = match outcome {
        None => {
            warn!("the job's lease was lost; stopped it without reporting anything");
            Ok(JobResult::Abandoned)
        }
        Some(Ok(())) => match report(lease, lease_len, || ctx.queue.complete(lease)).await {
            Ok(Some(())) => {
                info!("job succeeded");
                Ok(JobResult::Succeeded)
            }
            Ok(None) => {
                warn!("the job finished, but it was cancelled or taken over meanwhile; its result is not recorded");
                Ok(JobResult::Abandoned)
            }
            Err(e) => Err(e),
        },
        Some(Err((e, failure))) => {
            let error = e.to_string();
            let result = report(lease, lease_len, || ctx.queue.fail(lease, &error, failure)).await.map(|o| match o {
                Some(FailOutcome::Dead) => JobResult::Dead,
                Some(FailOutcome::RetryAt(_)) => JobResult::WillRetry,
                None => JobResult::Abandoned,
            });
            warn!(error = %e, ?failure, ?result, "job failed");
            result
        }
    };
    renewing.abort();
    if let Ok(JobResult::Abandoned) = result {
        // Stopped (its ffmpeg too): a retried copy need not wait out the lease.
        let _ = tokio::time::timeout(lease_len / 6, ctx.queue.release(job.id, &ctx.worker)).await;
    }
    result
}

/// Renew `lease` every third of its length, carrying the latest progress.
/// A renewal that fails for a passing reason is tried again sooner; if none
/// succeeds before half the lease has passed, cancel `lost`: the job must not
/// run on without its lease, since another worker may claim it when it expires.
async fn keep_lease(queue: Queue, lease: Lease, len: Duration, progress: ProgressSink, lost: CancellationToken) {
    let mut renewed = Instant::now();
    let mut next = len / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(renewed + len / 2) => {
                warn!(lease = ?len, "could not renew the job's lease for half of it; stopping the job");
                lost.cancel();
                return;
            }
            _ = tokio::time::sleep(next) => {}
        }
        let latest = progress.take();
        match tokio::time::timeout(len / 6, queue.heartbeat(lease, len, latest.as_ref())).await {
            Ok(Ok(())) => {
                renewed = Instant::now();
                next = len / 3;
            }
            Ok(Err(QueueError::Db(e))) => {
                warn!(error = %e, "lease renewal failed; trying again");
                progress.keep(latest);
                next = len / 12;
            }
            Err(_) => {
                warn!("lease renewal got no answer; trying again");
                progress.keep(latest);
                next = len / 12;
            }
            Ok(Err(e)) => {
                warn!(error = %e, "job lease lost; stopping it");
                lost.cancel();
                return;
            }
        }
    }
}

/// Write a job's outcome, trying again on passing errors with the same
/// fence for up to one lease length. `Ok(None)`: the job is no longer ours.
async fn report<T, F, Fut>(lease: Lease, len: Duration, write: F) -> Result<Option<T>, QueueError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let deadline = Instant::now() + len;
    loop {
        let error = match tokio::time::timeout(len / 6, write()).await {
            Ok(Ok(value)) => return Ok(Some(value)),
            Ok(Err(e)) => match e.class() {
                ErrorClass::Fenced => return Ok(None),
                ErrorClass::Transient => e,
                ErrorClass::Config | ErrorClass::Permanent => return Err(e),
            },
            Err(_) => QueueError::NoAnswer(len / 6),
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        warn!(job = lease.id, error = %error, "writing the job's outcome failed; trying again");
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        .unwrap_or_else(|_| Err(JobError::permanent("the job's handler panicked; see the cell's log")))
}

/// Run a job by its kind. Its row is untrusted: arguments that do not fit
/// the kind fail it for good, with the reason.
async fn dispatch(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    match JobArgs::of(job).map_err(JobError::permanent)? {
        JobArgs::VodDownload(args) => jobs::vod_download::run(ctx, job, &args, progress).await,
        JobArgs::Reencode(args) => jobs::reencode::run(ctx, &args, progress).await,
        JobArgs::Export(args) => jobs::export::run(ctx, &args, progress).await,
        JobArgs::Thumbnails(args) => jobs::thumbnails::run(ctx, &args, progress).await,
        JobArgs::Repair(args) => jobs::repair::run(ctx, job, &args, progress).await,
        JobArgs::ArchiveTier(args) => jobs::archive_tier::run(ctx, &args, progress).await,
        JobArgs::Webhook(_) => Err(JobError::permanent(
            "webhook deliveries are the mothership's: it holds the signing secrets, a harvest cell never does",
        )),
        JobArgs::ChatExport(args) => jobs::chat_export::run(ctx, &args, progress).await,
    }
}
