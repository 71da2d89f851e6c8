//! The harvest cell: a queue worker for the work that can wait.
//!
//! [`work_once`] claims one job, runs it while a side task renews its lease
//! (carrying progress), and completes or fails it, fenced on the lease
//! generation. A worker fences itself: if it cannot renew the lease before
//! half of it has passed, it stops the job (and its ffmpeg) and reports
//! nothing, because another worker may take the job once the lease expires.
//! Each job has a per-kind timeout. [`run`] wraps it in `--concurrency`
//! loops that exit after `--idle-exit` with nothing to do, or at once when
//! the queue is empty with `--drain`. On SIGTERM nothing new is claimed;
//! running jobs get a deadline, then go back to the queue without spending
//! an attempt.

pub mod jobs;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use colony::cells::{self, Registration, Role};
use colony::exit::{Classify, ErrorClass};
use colony::hls::HlsClient;
use colony::queue::{FailOutcome, Failure, Job, JobArgs, JobKind, JobWaker, KindFilter, Lease, Queue, QueueError};
use colony::storage::ObjectStore;
use jobs::{JobError, ProgressSink, archive_tier, chat_export, export, reencode, repair, thumbnails, vod_download};

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

    /// Never leave for lack of work (--idle-exit does not apply); only
    /// SIGTERM ends the cell. The mothership starts cells this way when it
    /// keeps a minimum pool (COLONY_MIN_HARVEST), so none leaves only to be
    /// started again.
    #[arg(long, env = "HARVEST_STAY")]
    pub stay: bool,

    /// Lease length; heartbeats renew it every third of it, and a job whose
    /// lease could not be renewed for half of it is stopped.
    #[arg(long, env = "HARVEST_LEASE", default_value = "60s", value_name = "DURATION")]
    pub lease: colony::config::NonZeroDuration,

    /// On SIGTERM: how long running jobs may take before they are handed back.
    #[arg(long, env = "HARVEST_SHUTDOWN_DEADLINE", default_value = "30s", value_name = "DURATION")]
    pub shutdown_deadline: humantime::Duration,

    /// Longest wait between queue polls when no notification arrives.
    #[arg(long, env = "HARVEST_POLL", default_value = "5s", value_name = "DURATION")]
    pub poll: colony::config::NonZeroDuration,

    /// Segments a VOD download fetches at once.
    #[arg(long, env = "HARVEST_DOWNLOAD_CONCURRENCY", default_value_t = 8, value_name = "N")]
    pub download_concurrency: usize,

    /// Timeout for one HTTP request.
    #[arg(long, env = "HARVEST_FETCH_TIMEOUT", default_value = "30s", value_name = "DURATION")]
    pub fetch_timeout: humantime::Duration,

    /// A job running longer than this fails (and is retried with backoff).
    #[arg(long, env = "HARVEST_JOB_TIMEOUT", default_value = "6h", value_name = "DURATION")]
    pub job_timeout: colony::config::NonZeroDuration,

    /// Timeouts for some kinds, overriding --job-timeout: kind=duration,
    /// comma-separated, e.g. reencode=12h,thumbnails=30m.
    #[arg(long, env = "HARVEST_JOB_TIMEOUTS", value_delimiter = ',', value_name = "KIND=DURATION")]
    pub job_timeouts: Vec<KindTimeout>,

    #[command(flatten)]
    pub limits: colony::hls::FetchLimits,

    #[command(flatten)]
    pub vod: colony::recording::VodArgs,

    #[command(flatten)]
    pub resolvers: colony::resolver::Resolvers,
}

/// A job kind's timeout: `reencode=12h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTimeout {
    pub kind: JobKind,
    pub timeout: Duration,
}

impl std::str::FromStr for KindTimeout {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (kind, duration) = raw.split_once('=').ok_or("expected kind=duration, e.g. reencode=12h")?;
        let kind: JobKind = kind.parse().map_err(|e: colony::queue::UnknownKind| e.to_string())?;
        let timeout = duration.trim().parse::<colony::config::NonZeroDuration>()?.get();
        Ok(Self { kind, timeout })
    }
}

impl HarvestArgs {
    /// How long a job of `kind` may run.
    pub fn timeout_for(&self, kind: &str) -> Duration {
        self.job_timeouts.iter().find(|t| t.kind.as_str() == kind).map_or(self.job_timeout.get(), |t| t.timeout)
    }

    /// The kinds to claim, refusing kinds this build cannot run. Webhook
    /// deliveries are never a harvest cell's: the mothership signs and
    /// sends them, so a cell never holds a webhook's secret.
    pub fn kind_filter(&self) -> Result<KindFilter, String> {
        let runs = |k: &JobKind| *k != JobKind::Webhook;
        if self.kinds.is_empty() {
            return Ok(KindFilter::Only(JobKind::ALL.iter().filter(|k| runs(k)).map(|k| k.to_string()).collect()));
        }
        let mut kinds = Vec::new();
        for kind in &self.kinds {
            let kind: JobKind = kind.parse().map_err(|_| {
                format!("this build cannot run '{}' jobs; it runs: {}", kind.escape_debug(), JobKind::cli_list())
            })?;
            if !runs(&kind) {
                return Err("webhook deliveries are the mothership's (it holds the signing secrets); \
                            drop webhook from HARVEST_KINDS"
                    .into());
            }
            kinds.push(kind.to_string());
        }
        Ok(KindFilter::Only(kinds))
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

/// The longest a queue query outside a job may go unanswered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// `query`, or [`QueueError::NoAnswer`] after [`QUERY_TIMEOUT`]: without a
/// bound, a connection a partition left half-open hangs the loop for good.
async fn answered<T>(query: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
    tokio::time::timeout(QUERY_TIMEOUT, query).await.unwrap_or(Err(QueueError::NoAnswer(QUERY_TIMEOUT)))
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

async fn run_claimed(ctx: &Ctx, job: &Job, stop: &CancellationToken) -> Result<JobResult, QueueError> {
    info!("job started");
    let progress = ProgressSink::default();
    let lease = job.lease();
    let lease_len: Duration = ctx.args.lease.into();
    let lost = CancellationToken::new();
    let renewing = tokio::spawn(keep_lease(ctx.queue.clone(), lease, lease_len, progress.clone(), lost.clone()));
    let timeout = ctx.args.timeout_for(&job.kind);
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
                Err(e @ (QueueError::Db(_) | QueueError::NoAnswer(_))) => Err(e),
                Err(_) => Ok(JobResult::Abandoned),
            };
        }
    };
    // The last progress goes with the outcome; the lease is still renewed
    // while the outcome is written.
    if let Some(last) = progress.take() {
        let _ = tokio::time::timeout(lease_len / 6, ctx.queue.heartbeat(lease, lease_len, Some(&last))).await;
    }
    let result = match outcome {
        None | Some(Err(JobError::Fenced(_))) => {
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
        Some(Err(e)) => {
            let failure = match e {
                JobError::Permanent(_) => Failure::Permanent,
                _ => Failure::Transient,
            };
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
/// How long since a loop last had work (a panic elsewhere cannot poison this).
fn idle_for(last_activity: &Mutex<Instant>) -> Duration {
    last_activity.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
}

async fn report<T, F, Fut>(lease: Lease, len: Duration, write: F) -> Result<Option<T>, QueueError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let deadline = Instant::now() + len;
    loop {
        let error = match tokio::time::timeout(len / 6, write()).await {
            Ok(Ok(value)) => return Ok(Some(value)),
            Ok(Err(QueueError::LostLease { .. } | QueueError::Cancelled { .. })) => return Ok(None),
            Ok(Err(e @ (QueueError::Db(_) | QueueError::NoAnswer(_)))) => e,
            Ok(Err(other)) => return Err(other),
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
        JobArgs::VodDownload(args) => vod_download::run(ctx, job, &args, progress).await,
        JobArgs::Reencode(args) => reencode::run(ctx, &args, progress).await,
        JobArgs::Export(args) => export::run(ctx, &args, progress).await,
        JobArgs::Thumbnails(args) => thumbnails::run(ctx, &args, progress).await,
        JobArgs::Repair(args) => repair::run(ctx, job, &args, progress).await,
        JobArgs::ArchiveTier(args) => archive_tier::run(ctx, &args, progress).await,
        JobArgs::Webhook(_) => Err(JobError::permanent(
            "webhook deliveries are the mothership's: it holds the signing secrets, a harvest cell never does",
        )),
        JobArgs::ChatExport(args) => chat_export::run(ctx, &args, progress).await,
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
/// A row the mothership marked dead, exited or stopping stays so: the cell
/// must not run, and gets [`CellGone`].
pub async fn register(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), CellError> {
    let me = Registration { id: cell_id, role: Role::Harvest, channel_id: None, recording_id: None, lease_token: None };
    if cells::register(pool, me).await? { Ok(()) } else { Err(CellError::Gone(cell_id)) }
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("cell {0} was marked dead or told to stop by the mothership; it must not run")]
    Gone(uuid::Uuid),
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl Classify for CellError {
    fn class(&self) -> ErrorClass {
        match self {
            CellError::Gone(_) => ErrorClass::Fenced,
            CellError::Db(_) => ErrorClass::Transient,
        }
    }
}

/// Keep the cell row's heartbeat fresh so the mothership counts this cell
/// in the pool. Returns when the row is no longer active (the mothership
/// buried the cell): the cell must then stop.
pub async fn heartbeat_cell(pool: sqlx::PgPool, cell_id: uuid::Uuid, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let beat = cells::heartbeat(&pool, cell_id);
        match tokio::time::timeout(every.max(Duration::from_secs(1)), beat).await {
            Ok(Ok(false)) => {
                warn!("this cell's row is no longer active (the mothership marked it dead); stopping");
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "cell heartbeat failed; retrying at the next interval"),
            Err(_) => warn!("cell heartbeat got no answer; retrying at the next interval"),
        }
    }
}

/// The cell is leaving of its own accord.
pub async fn mark_exited(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    cells::mark_exited(pool, cell_id).await
}
