//! The job queue, of River's shape, in Postgres.
//!
//! Jobs move `available → running → succeeded`, or on failure to `retryable`
//! (with an exponential, jittered, capped delay) and finally `dead` with their
//! last error. A claim is one `FOR UPDATE SKIP LOCKED` statement, so any number
//! of workers on any number of machines never take the same job. Every
//! change a worker makes to its job is fenced on its lease generation, drawn
//! from one sequence on every claim, give-back, retry, rescue and cancel: it
//! only goes up and is never reused, so once a job left a worker (rescued,
//! cancelled, retried, handed back) that worker's heartbeat, `complete` and
//! `fail`, and the job's own writes, are refused.

mod backoff;
mod kind;
mod waker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgQueryResult;
use sqlx::{PgExecutor, PgPool};

pub use backoff::Backoff;
pub use kind::{
    ArchiveTierArgs, ArgsError, JobArgs, JobKind, RecordingArgs, ReencodeArgs, UnknownKind, VodDownloadArgs,
    WebhookArgs,
};
pub use waker::{CHANNEL as NOTIFY_CHANNEL, JobWaker, Wake};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "job_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Available,
    Running,
    Retryable,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Dead | JobState::Cancelled)
    }
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub args: Value,
    pub state: JobState,
    pub priority: i16,
    pub run_at: DateTime<Utc>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub attempted_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub unique_key: Option<String>,
    pub progress: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub lease_generation: i64,
}

impl Job {
    /// The job's kind, if this build knows it. The row stores text: the
    /// queue carries any kind, and a newer build may have written one this
    /// build cannot run.
    pub fn known_kind(&self) -> Result<JobKind, kind::UnknownKind> {
        self.kind.parse()
    }

    /// The fence a worker presents with every change to this job.
    pub fn lease(&self) -> Lease {
        Lease { id: self.id, attempt: self.attempt, generation: self.lease_generation }
    }
}

/// A claimed job's fence: its id and the lease generation of this claim.
/// The attempt number is carried for messages and backoff only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub id: i64,
    pub attempt: i32,
    pub generation: i64,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub args: Value,
    pub priority: i16,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, args: Value) -> Self {
        Self { kind: kind.into(), args, priority: 0, run_at: None, max_attempts: 5, unique_key: None }
    }
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created(i64),
    /// A job with the same unique key is already queued, running or done.
    Duplicate(i64),
}

impl Enqueued {
    pub fn id(self) -> i64 {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// How a failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt after a backoff (timeouts, 5xx, storage hiccups).
    Transient,
    /// No attempt will ever succeed (a 404 VOD, undecodable media): dead now.
    Permanent,
}

impl Failure {
    /// What an error's class means for its job: only a transient error
    /// earns another attempt.
    pub fn of(e: &impl crate::exit::Classify) -> Self {
        match e.class() {
            crate::exit::ErrorClass::Transient => Failure::Transient,
            crate::exit::ErrorClass::Permanent | crate::exit::ErrorClass::Config | crate::exit::ErrorClass::Fenced => {
                Failure::Permanent
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    RetryAt(DateTime<Utc>),
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    AlreadyFinal(JobState),
    NotFound,
}

/// A job whose lease expired and that the rescuer put back (or buried).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Rescued {
    pub id: i64,
    pub kind: String,
    pub attempted_by: Option<String>,
    pub state: JobState,
}

/// The queue's figures, as the columns of [`KindStats`].
const COUNTS: &str = "count(*) FILTER (WHERE state IN ('available', 'retryable') AND run_at <= now()) AS ready,
        count(*) FILTER (WHERE state = 'running') AS running,
        count(*) FILTER (WHERE state IN ('available', 'retryable') AND run_at > now()) AS delayed,
        count(*) FILTER (WHERE state = 'dead') AS dead,
        EXTRACT(EPOCH FROM now() - min(run_at) FILTER (
            WHERE state IN ('available', 'retryable') AND run_at <= now()))::float8 AS oldest_ready_secs
   FROM jobs
  WHERE state IN ('available', 'retryable', 'running', 'dead')";

/// The figures of [`Queue::stats`] over every kind harvest cells run (`kind`
/// is `*`): what the mothership sizes the harvest pool by. Webhook
/// deliveries are the mothership's own and call for no cell.
pub async fn totals<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<KindStats, sqlx::Error> {
    sqlx::query_as(&format!("SELECT '*' AS kind, {COUNTS} AND kind <> 'webhook'")).fetch_one(db).await
}

/// Queue figures for one job kind.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct KindStats {
    pub kind: String,
    pub ready: i64,
    pub running: i64,
    pub delayed: i64,
    pub dead: i64,
    /// Seconds the oldest ready job has been waiting.
    pub oldest_ready_secs: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The job is no longer this worker's: its lease expired and it was
    /// rescued, handed back, retried, or claimed again.
    #[error("job {id} attempt {attempt} no longer holds its lease")]
    LostLease { id: i64, attempt: i32 },
    #[error("job {id} was cancelled")]
    Cancelled { id: i64 },
    #[error("there is no job {0}")]
    NotFound(i64),
    #[error("job {id} is {state:?}; only dead or cancelled jobs can be retried")]
    NotRetryable { id: i64, state: JobState },
    #[error("queue query failed")]
    Db(#[from] sqlx::Error),
    /// A half-open connection (a partition) answers nothing, ever: callers
    /// bound their queries and treat this like a passing database error.
    #[error("Postgres gave no answer within {}", humantime::format_duration(*.0))]
    NoAnswer(Duration),
}

/// Which kinds a worker takes. `All` by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KindFilter {
    #[default]
    All,
    Only(Vec<String>),
}

impl KindFilter {
    fn as_param(&self) -> Option<Vec<String>> {
        match self {
            KindFilter::All => None,
            KindFilter::Only(kinds) => Some(kinds.clone()),
        }
    }
}

/// A claimed job's fence: its id and the lease generation of this claim.
/// A write that carries it lands only while the claim still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFence {
    pub job_id: i64,
    pub generation: i64,
}

impl JobFence {
    pub fn of(job: &Job) -> Self {
        Self { job_id: job.id, generation: job.lease_generation }
    }

    /// A CTE body that yields one row while the claim holds, with the job id
    /// bound at `$n` and the generation at `$n+1`.
    pub fn cte(n: usize) -> String {
        format!("SELECT 1 FROM jobs WHERE id = ${n} AND lease_generation = ${} AND state = 'running' FOR SHARE", n + 1)
    }
}

const JOB_COLUMNS: &str = "id, kind, args, state, priority, run_at, attempt, max_attempts, attempted_by, \
                           lease_until, last_error, unique_key, progress, created_at, lease_generation";

#[derive(Debug, Clone)]
pub struct Queue {
    pool: PgPool,
    backoff: Backoff,
}

impl Queue {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, backoff: Backoff::default() }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Enqueue a job. Inside a caller's transaction too, so "finalize the
    /// recording and enqueue its post-processing" commits as one.
    pub async fn enqueue_with<'e>(executor: impl PgExecutor<'e>, job: &NewJob) -> Result<Enqueued, QueueError> {
        let row: (i64, bool) = sqlx::query_as(
            "WITH ins AS (
                 INSERT INTO jobs (kind, args, priority, run_at, max_attempts, unique_key)
                 VALUES ($1, $2, $3, COALESCE($4, now()), $5, $6)
                 ON CONFLICT (unique_key)
                     WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable', 'succeeded')
                     DO NOTHING
                 RETURNING id
             )
             SELECT id, true FROM ins
             UNION ALL
             SELECT id, false FROM jobs
              WHERE unique_key = $6 AND state IN ('available', 'running', 'retryable', 'succeeded')
                AND NOT EXISTS (SELECT 1 FROM ins)
             LIMIT 1",
        )
        .bind(&job.kind)
        .bind(&job.args)
        .bind(job.priority)
        .bind(job.run_at)
        .bind(job.max_attempts)
        .bind(&job.unique_key)
        .fetch_one(executor)
        .await?;
        Ok(if row.1 { Enqueued::Created(row.0) } else { Enqueued::Duplicate(row.0) })
    }

    /// Enqueue many jobs in one statement (bulk backfill). Jobs whose unique
    /// key is already taken are skipped; returns how many were created.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<u64, QueueError> {
        let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
        let args: Vec<&Value> = jobs.iter().map(|j| &j.args).collect();
        let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
        let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
        let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
        let unique_keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
        let done = sqlx::query(
            "INSERT INTO jobs (kind, args, priority, run_at, max_attempts, unique_key)
             SELECT k, a, p, COALESCE(r, now()), m, u
               FROM unnest($1::text[], $2::jsonb[], $3::smallint[], $4::timestamptz[], $5::int[], $6::text[])
                    AS t(k, a, p, r, m, u)
             ON CONFLICT (unique_key)
                 WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable', 'succeeded')
                 DO NOTHING",
        )
        .bind(&kinds)
        .bind(&args)
        .bind(&priorities)
        .bind(&run_ats)
        .bind(&max_attempts)
        .bind(&unique_keys)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        Self::enqueue_with(&self.pool, job).await
    }

    /// Claim up to `limit` ready jobs for `worker`, highest priority first,
    /// then earliest `run_at`, then oldest. Each claim starts a new attempt.
    pub async fn claim(
        &self,
        worker: &str,
        kinds: &KindFilter,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let sql = format!(
            "WITH next AS (
                 SELECT id FROM jobs
                  WHERE state IN ('available', 'retryable') AND run_at <= now()
                    AND (lease_until IS NULL OR lease_until < now())
                    AND ($1::text[] IS NULL OR kind = ANY($1))
                  ORDER BY priority DESC, run_at, id
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED
             )
             UPDATE jobs j
                SET state = 'running', attempt = j.attempt + 1, attempted_at = now(),
                    attempted_by = $3, lease_until = now() + make_interval(secs => $4), progress = NULL,
                    lease_generation = nextval('job_lease_generation')
               FROM next WHERE j.id = next.id
             RETURNING {}",
            JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
        );
        let mut jobs: Vec<Job> = sqlx::query_as(&sql)
            .bind(kinds.as_param())
            .bind(limit)
            .bind(worker)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.run_at.cmp(&b.run_at)).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// Extend a lease, optionally recording progress. Tells the worker to stop
    /// if the job was cancelled or handed to someone else.
    pub async fn heartbeat(&self, lease: Lease, extend: Duration, progress: Option<&Value>) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), progress = COALESCE($4, progress)
              WHERE id = $1 AND lease_generation = $2 AND state = 'running'",
        )
        .bind(lease.id)
        .bind(lease.generation)
        .bind(extend.as_secs_f64())
        .bind(progress)
        .execute(&self.pool)
        .await?;
        self.fenced(lease, done).await
    }

    /// Mark a job done. Refused if the lease was lost.
    pub async fn complete(&self, lease: Lease) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', finalized_at = now(), lease_until = NULL
              WHERE id = $1 AND lease_generation = $2 AND state = 'running'",
        )
        .bind(lease.id)
        .bind(lease.generation)
        .execute(&self.pool)
        .await?;
        self.fenced(lease, done).await
    }

    /// Complete many jobs in one statement; returns the leases that were
    /// refused because they were lost.
    pub async fn complete_many(&self, leases: &[Lease]) -> Result<Vec<Lease>, QueueError> {
        let ids: Vec<i64> = leases.iter().map(|l| l.id).collect();
        let generations: Vec<i64> = leases.iter().map(|l| l.generation).collect();
        let completed: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs j SET state = 'succeeded', finalized_at = now(), lease_until = NULL
               FROM unnest($1::bigint[], $2::bigint[]) AS l(id, generation)
              WHERE j.id = l.id AND j.lease_generation = l.generation AND j.state = 'running'
             RETURNING j.id",
        )
        .bind(&ids)
        .bind(&generations)
        .fetch_all(&self.pool)
        .await?;
        Ok(leases.iter().filter(|l| !completed.contains(&l.id)).copied().collect())
    }

    /// Record a failed attempt: retry after a backoff, or dead when attempts
    /// are used up or the failure is permanent. The error is kept either way.
    pub async fn fail(&self, lease: Lease, error: &str, failure: Failure) -> Result<FailOutcome, QueueError> {
        let delay = self.backoff.delay(lease.attempt, &mut rand::rng());
        let row: Option<(JobState, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE jobs
                SET state = CASE WHEN $4 OR attempt >= max_attempts THEN 'dead'::job_state ELSE 'retryable'::job_state END,
                    run_at = CASE WHEN $4 OR attempt >= max_attempts THEN run_at
                                  ELSE now() + make_interval(secs => $5) END,
                    finalized_at = CASE WHEN $4 OR attempt >= max_attempts THEN now() END,
                    lease_until = NULL,
                    last_error = $3,
                    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'error', $3))
              WHERE id = $1 AND lease_generation = $2 AND state = 'running'
             RETURNING state, run_at",
        )
        .bind(lease.id)
        .bind(lease.generation)
        .bind(error)
        .bind(failure == Failure::Permanent)
        .bind(delay.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((JobState::Dead, _)) => Ok(FailOutcome::Dead),
            Some((_, run_at)) => Ok(FailOutcome::RetryAt(run_at)),
            None => Err(self.why_refused(lease).await),
        }
    }

    /// Hand a running job back without counting the attempt (a worker shutting
    /// down cleanly before it could finish).
    pub async fn give_back(&self, lease: Lease) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1, lease_until = NULL,
                    attempted_by = NULL, run_at = now(), lease_generation = nextval('job_lease_generation')
              WHERE id = $1 AND lease_generation = $2 AND state = 'running'",
        )
        .bind(lease.id)
        .bind(lease.generation)
        .execute(&self.pool)
        .await?;
        self.fenced(lease, done).await?;
        notify(&self.pool).await
    }

    /// Cancel a job that has not finished. A running job's worker learns of it
    /// at its next heartbeat, and its `complete` is refused. A running job
    /// keeps its lease until that worker says it stopped ([`release`](Self::release))
    /// or the lease runs out, so a `retry` never runs it twice at once.
    pub async fn cancel(&self, id: i64) -> Result<CancelOutcome, QueueError> {
        let row: Option<(JobState, bool)> = sqlx::query_as(
            "WITH target AS (SELECT id, state FROM jobs WHERE id = $1 FOR UPDATE),
                  upd AS (
                      UPDATE jobs j SET state = 'cancelled', finalized_at = now(),
                             lease_until = CASE WHEN t.state = 'running' THEN j.lease_until END,
                             lease_generation = nextval('job_lease_generation')
                        FROM target t
                       WHERE j.id = t.id AND t.state IN ('available', 'running', 'retryable')
                   RETURNING j.id)
             SELECT t.state, EXISTS (SELECT 1 FROM upd) FROM target t",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => CancelOutcome::NotFound,
            Some((_, true)) => CancelOutcome::Cancelled,
            Some((state, false)) => CancelOutcome::AlreadyFinal(state),
        })
    }

    /// A worker stopped a job it no longer holds (cancelled, or its lease
    /// moved on): if nobody claimed it since, what is left of its lease
    /// need not be waited out.
    pub async fn release(&self, id: i64, worker: &str) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE jobs SET lease_until = NULL
              WHERE id = $1 AND attempted_by = $2 AND state <> 'running' AND lease_until IS NOT NULL",
        )
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Put a dead or cancelled job back in the queue with fresh attempts. A
    /// job cancelled while it ran is claimed again only once that run has
    /// stopped, at the latest when its lease runs out: returns that time.
    pub async fn retry(&self, id: i64) -> Result<Option<DateTime<Utc>>, QueueError> {
        let state: Option<JobState> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        match state {
            None => return Err(QueueError::NotFound(id)),
            Some(JobState::Dead | JobState::Cancelled) => {}
            Some(state) => return Err(QueueError::NotRetryable { id, state }),
        }
        let pending: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'available', attempt = 0, run_at = now(), finalized_at = NULL,
                    lease_generation = nextval('job_lease_generation')
              WHERE id = $1 AND state IN ('dead', 'cancelled')
              RETURNING CASE WHEN lease_until > now() THEN lease_until END",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        notify(&self.pool).await?;
        Ok(pending.flatten())
    }

    /// Put back every running job whose lease has expired: retryable at once
    /// if it has attempts left, dead otherwise. The stale worker's later
    /// writes are refused by the fence.
    pub async fn rescue_expired(&self) -> Result<Vec<Rescued>, QueueError> {
        let rescued: Vec<Rescued> = sqlx::query_as(
            "UPDATE jobs
                SET state = CASE WHEN attempt >= max_attempts THEN 'dead'::job_state ELSE 'retryable'::job_state END,
                    finalized_at = CASE WHEN attempt >= max_attempts THEN now() END,
                    run_at = now(), lease_until = NULL, lease_generation = nextval('job_lease_generation'),
                    last_error = 'lease expired: worker ' || COALESCE(attempted_by, '?') || ' stopped heartbeating',
                    errors = errors || jsonb_build_array(jsonb_build_object(
                        'attempt', attempt, 'at', now(),
                        'error', 'lease expired: worker ' || COALESCE(attempted_by, '?') || ' stopped heartbeating'))
              WHERE state = 'running' AND lease_until < now()
             RETURNING id, kind, attempted_by, state",
        )
        .fetch_all(&self.pool)
        .await?;
        if !rescued.is_empty() {
            notify(&self.pool).await?;
        }
        Ok(rescued)
    }

    pub async fn get(&self, id: i64) -> Result<Job, QueueError> {
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::NotFound(id))
    }

    /// Ready, running, delayed and dead counts per kind, and how long the
    /// oldest ready job has waited.
    pub async fn stats(&self) -> Result<Vec<KindStats>, QueueError> {
        Ok(sqlx::query_as(&format!("SELECT kind, {COUNTS} GROUP BY kind ORDER BY kind")).fetch_all(&self.pool).await?)
    }

    async fn fenced(&self, lease: Lease, result: PgQueryResult) -> Result<(), QueueError> {
        if result.rows_affected() == 1 { Ok(()) } else { Err(self.why_refused(lease).await) }
    }

    async fn why_refused(&self, lease: Lease) -> QueueError {
        let state: Result<Option<JobState>, _> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(lease.id).fetch_optional(&self.pool).await;
        match state {
            Ok(None) => QueueError::NotFound(lease.id),
            Ok(Some(JobState::Cancelled)) => QueueError::Cancelled { id: lease.id },
            _ => QueueError::LostLease { id: lease.id, attempt: lease.attempt },
        }
    }
}

async fn notify(pool: &PgPool) -> Result<(), QueueError> {
    sqlx::query("SELECT pg_notify($1, '')").bind(NOTIFY_CHANNEL).execute(pool).await?;
    Ok(())
}

impl crate::exit::Classify for QueueError {
    fn class(&self) -> crate::exit::ErrorClass {
        use crate::exit::ErrorClass;
        match self {
            QueueError::LostLease { .. } | QueueError::Cancelled { .. } => ErrorClass::Fenced,
            QueueError::NotFound(_) | QueueError::NotRetryable { .. } => ErrorClass::Config,
            QueueError::Db(_) | QueueError::NoAnswer(_) => ErrorClass::Transient,
        }
    }
}
