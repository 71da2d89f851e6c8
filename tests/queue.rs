//! The job queue against a real Postgres: exactly-once under concurrency,
//! lease loss and fencing, dedupe, ordering, backoff, dead letters, cancel,
//! stats and LISTEN/NOTIFY wake-ups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use colony::queue::{
    Backoff, CancelOutcome, Enqueued, FailOutcome, Failure, JobState, JobWaker, KindFilter, NewJob, Queue, QueueError,
    Wake,
};
use colony_tests::pg::TestDb;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

async fn queue(db: &TestDb, connections: u32) -> Queue {
    Queue::new(db.pool(connections).await)
}

async fn state_of(q: &Queue, id: i64) -> JobState {
    q.get(id).await.unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_workers_drain_ten_thousand_jobs_each_exactly_once() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 24).await;
    let jobs: Vec<NewJob> = (0..10_000).map(|i| NewJob::new("noop", json!({ "n": i }))).collect();
    assert_eq!(q.enqueue_many(&jobs).await.unwrap(), 10_000);

    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (q, runs) = (q.clone(), runs.clone());
        workers.push(tokio::spawn(async move {
            let name = format!("worker-{w}");
            loop {
                let claimed = q.claim(&name, &KindFilter::All, 8, LEASE).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                for job in &claimed {
                    *runs.lock().unwrap().entry(job.id).or_default() += 1;
                    q.complete(job.lease()).await.unwrap();
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 10_000, "every job ran");
    let doubles: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubles.is_empty(), "jobs run more than once: {doubles:?}");
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND attempt = 1")
        .fetch_one(q.pool())
        .await
        .unwrap();
    assert_eq!(succeeded, 10_000);
}

#[tokio::test]
async fn stale_worker_loses_its_lease_and_its_late_complete_is_refused() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let id = q.enqueue(&NewJob::new("vod_download", json!({}))).await.unwrap().id();

    let stale = q.claim("stale", &KindFilter::All, 1, Duration::from_millis(300)).await.unwrap().remove(0);
    assert_eq!(stale.attempt, 1);
    // No heartbeat: the lease runs out and the rescuer puts the job back.
    let rescued = colony_tests::eventually("lease to expire", Duration::from_secs(10), || async {
        let r = q.rescue_expired().await.unwrap();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].id, id);
    assert_eq!(rescued[0].attempted_by.as_deref(), Some("stale"));
    assert_eq!(rescued[0].state, JobState::Retryable);

    let fresh = q.claim("fresh", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!((fresh.id, fresh.attempt), (id, 2));

    // The stale worker wakes up: every write it tries is fenced out.
    assert!(matches!(q.heartbeat(stale.lease(), LEASE, None).await, Err(QueueError::LostLease { .. })));
    assert!(matches!(q.complete(stale.lease()).await, Err(QueueError::LostLease { .. })));
    assert!(matches!(q.fail(stale.lease(), "late", Failure::Transient).await, Err(QueueError::LostLease { .. })));
    assert_eq!(state_of(&q, id).await, JobState::Running);

    q.complete(fresh.lease()).await.unwrap();
    let job = q.get(id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert!(job.last_error.unwrap().contains("lease expired"));
    assert!(matches!(q.complete(stale.lease()).await, Err(QueueError::LostLease { .. })));
}

#[tokio::test]
async fn heartbeats_keep_a_lease_alive_and_record_progress() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    q.enqueue(&NewJob::new("reencode", json!({}))).await.unwrap();
    let job = q.claim("w", &KindFilter::All, 1, Duration::from_millis(500)).await.unwrap().remove(0);
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        q.heartbeat(job.lease(), Duration::from_millis(500), Some(&json!({ "percent": i * 25 }))).await.unwrap();
        assert!(q.rescue_expired().await.unwrap().is_empty(), "a heartbeating job was rescued");
    }
    let row = q.get(job.id).await.unwrap();
    assert_eq!(row.progress, Some(json!({ "percent": 75 })));
    assert_eq!(row.state, JobState::Running);
}

#[tokio::test]
async fn unique_keys_dedupe_until_the_job_is_dead_or_cancelled() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let job = NewJob::new("vod_download", json!({ "url": "u" })).unique_key("vod:u");
    let first = q.enqueue(&job).await.unwrap();
    assert!(matches!(first, Enqueued::Created(_)));
    assert_eq!(q.enqueue(&job).await.unwrap(), Enqueued::Duplicate(first.id()));
    assert_eq!(q.enqueue_many(&[job.clone(), job.clone()]).await.unwrap(), 0);

    // Still a duplicate while running and after success.
    let claimed = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!(q.enqueue(&job).await.unwrap(), Enqueued::Duplicate(first.id()));
    q.complete(claimed.lease()).await.unwrap();
    assert_eq!(q.enqueue(&job).await.unwrap(), Enqueued::Duplicate(first.id()));

    // A cancelled job does not block the same work being asked for again.
    let other = NewJob::new("export", json!({})).unique_key("export:1");
    let a = q.enqueue(&other).await.unwrap().id();
    assert_eq!(q.cancel(a).await.unwrap(), CancelOutcome::Cancelled);
    let b = q.enqueue(&other).await.unwrap();
    assert!(matches!(b, Enqueued::Created(id) if id != a));

    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(q.pool()).await.unwrap();
    assert_eq!(total, 3);
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_then_age_and_respect_run_at() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let now = Utc::now();
    let secs = chrono::Duration::seconds;
    let low_old = q.enqueue(&NewJob::new("k", json!({})).run_at(now - secs(30))).await.unwrap().id();
    let low_new = q.enqueue(&NewJob::new("k", json!({})).run_at(now - secs(10))).await.unwrap().id();
    let high = q.enqueue(&NewJob::new("k", json!({})).priority(5).run_at(now - secs(1))).await.unwrap().id();
    let future = q.enqueue(&NewJob::new("k", json!({})).priority(9).run_at(now + secs(3600))).await.unwrap().id();
    let low_same_a = q.enqueue(&NewJob::new("k", json!({})).run_at(now - secs(5))).await.unwrap().id();
    let low_same_b = q.enqueue(&NewJob::new("k", json!({})).run_at(now - secs(5))).await.unwrap().id();

    let mut order = Vec::new();
    while let Some(job) = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().pop() {
        order.push(job.id);
    }
    assert_eq!(order, [high, low_old, low_new, low_same_a, low_same_b]);
    assert_eq!(state_of(&q, future).await, JobState::Available, "a job due in an hour was claimed");

    // A batch claim returns the same order.
    let ids: Vec<NewJob> = (0..5).map(|i| NewJob::new("k", json!({})).priority(i)).collect();
    q.enqueue_many(&ids).await.unwrap();
    let batch: Vec<i16> = q.claim("w", &KindFilter::All, 5, LEASE).await.unwrap().iter().map(|j| j.priority).collect();
    assert_eq!(batch, [4, 3, 2, 1, 0]);
}

#[tokio::test]
async fn kind_filter_limits_what_a_worker_takes() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    q.enqueue(&NewJob::new("reencode", json!({}))).await.unwrap();
    let dl = q.enqueue(&NewJob::new("vod_download", json!({}))).await.unwrap().id();
    let only = KindFilter::Only(vec!["vod_download".into(), "repair".into()]);
    let claimed = q.claim("w", &only, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [dl]);
}

#[tokio::test]
async fn failed_attempts_back_off_on_the_documented_schedule() {
    let db = TestDb::migrated().await;
    let backoff = Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(25), jitter: 0.2 };
    let q = queue(&db, 4).await.with_backoff(backoff);
    let id = q.enqueue(&NewJob::new("k", json!({})).max_attempts(10)).await.unwrap().id();
    for attempt in 1..=4 {
        let job = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
        assert_eq!(job.attempt, attempt);
        let before = Utc::now();
        let FailOutcome::RetryAt(at) = q.fail(job.lease(), "flaky", Failure::Transient).await.unwrap() else {
            panic!("attempt {attempt} went dead");
        };
        let after = Utc::now();
        let (lo, hi) = backoff.bounds(attempt);
        let slack = chrono::Duration::milliseconds(50);
        assert!(at >= before + chrono::Duration::from_std(lo).unwrap() - slack, "attempt {attempt}: {at} too early");
        assert!(at <= after + chrono::Duration::from_std(hi).unwrap() + slack, "attempt {attempt}: {at} too late");
        assert_eq!(state_of(&q, id).await, JobState::Retryable);
        assert!(q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().is_empty(), "claimed before its backoff");
        sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1").bind(id).execute(q.pool()).await.unwrap();
    }
    // Past the cap, the delay stays at the cap.
    assert_eq!(backoff.nominal(4), Duration::from_secs(25));
}

#[tokio::test]
async fn a_job_that_always_fails_ends_dead_with_its_last_error() {
    let db = TestDb::migrated().await;
    let fast = Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(1), jitter: 0.0 };
    let q = queue(&db, 4).await.with_backoff(fast);
    let poison = q.enqueue(&NewJob::new("k", json!({})).max_attempts(3)).await.unwrap().id();
    let good = q.enqueue(&NewJob::new("k", json!({}))).await.unwrap().id();
    let mut outcomes = Vec::new();
    let mut done_good = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outcomes.len() < 3 || !done_good {
        assert!(std::time::Instant::now() < deadline, "queue did not settle");
        for job in q.claim("w", &KindFilter::All, 2, LEASE).await.unwrap() {
            if job.id == poison {
                outcomes.push(q.fail(job.lease(), &format!("boom {}", job.attempt), Failure::Transient).await.unwrap());
            } else {
                q.complete(job.lease()).await.unwrap();
                done_good = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(outcomes[0], FailOutcome::RetryAt(_)));
    assert!(matches!(outcomes[1], FailOutcome::RetryAt(_)));
    assert_eq!(outcomes[2], FailOutcome::Dead);
    let job = q.get(poison).await.unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.last_error.as_deref(), Some("boom 3"));
    let errors: serde_json::Value =
        sqlx::query_scalar("SELECT errors FROM jobs WHERE id = $1").bind(poison).fetch_one(q.pool()).await.unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 3);
    assert_eq!(state_of(&q, good).await, JobState::Succeeded);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    q.enqueue(&NewJob::new("vod_download", json!({})).max_attempts(5)).await.unwrap();
    let job = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!(q.fail(job.lease(), "VOD answered 404", Failure::Permanent).await.unwrap(), FailOutcome::Dead);
    assert_eq!(q.get(job.id).await.unwrap().last_error.as_deref(), Some("VOD answered 404"));
}

#[tokio::test]
async fn cancel_works_on_available_and_running_jobs() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let waiting = q.enqueue(&NewJob::new("k", json!({}))).await.unwrap().id();
    assert_eq!(q.cancel(waiting).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(state_of(&q, waiting).await, JobState::Cancelled);
    assert!(q.claim("w", &KindFilter::All, 10, LEASE).await.unwrap().is_empty(), "a cancelled job was claimed");

    let running = q.enqueue(&NewJob::new("k", json!({}))).await.unwrap().id();
    let job = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.id, running);
    assert_eq!(q.cancel(running).await.unwrap(), CancelOutcome::Cancelled);
    // The worker learns at its next heartbeat, and cannot complete it.
    assert!(matches!(q.heartbeat(job.lease(), LEASE, None).await, Err(QueueError::Cancelled { .. })));
    assert!(matches!(q.complete(job.lease()).await, Err(QueueError::Cancelled { .. })));
    assert_eq!(state_of(&q, running).await, JobState::Cancelled);

    assert_eq!(q.cancel(running).await.unwrap(), CancelOutcome::AlreadyFinal(JobState::Cancelled));
    assert_eq!(q.cancel(999_999).await.unwrap(), CancelOutcome::NotFound);

    // Retried, it waits until the cancelled run has stopped (or its lease ran out).
    assert!(q.retry(running).await.unwrap().is_some(), "retry says when the cancelled run's lease ends");
    assert!(
        q.claim("w2", &KindFilter::All, 1, LEASE).await.unwrap().is_empty(),
        "claimed while the old run may still run"
    );
    q.release(running, "w").await.unwrap();
    let again = q.claim("w2", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempt), (running, 1));
}

#[tokio::test]
async fn give_back_returns_a_job_without_spending_an_attempt() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let id = q.enqueue(&NewJob::new("k", json!({}))).await.unwrap().id();
    let job = q.claim("w", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    q.give_back(job.lease()).await.unwrap();
    let again = q.claim("w2", &KindFilter::All, 1, LEASE).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempt), (id, 1));
}

#[tokio::test]
async fn a_rescued_job_without_attempts_left_is_dead() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let id = q.enqueue(&NewJob::new("k", json!({})).max_attempts(1)).await.unwrap().id();
    q.claim("w", &KindFilter::All, 1, Duration::from_millis(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rescued = q.rescue_expired().await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].state, JobState::Dead);
    assert_eq!(state_of(&q, id).await, JobState::Dead);
}

#[tokio::test]
async fn stats_count_each_kind() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    for _ in 0..3 {
        q.enqueue(&NewJob::new("thumbnails", json!({}))).await.unwrap();
    }
    q.enqueue(&NewJob::new("thumbnails", json!({})).run_at(later)).await.unwrap();
    q.enqueue(&NewJob::new("export", json!({}))).await.unwrap();
    q.claim("w", &KindFilter::Only(vec!["export".into()]), 1, LEASE).await.unwrap();
    let dead = q.enqueue(&NewJob::new("repair", json!({}))).await.unwrap().id();
    let job = q.claim("w", &KindFilter::Only(vec!["repair".into()]), 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.id, dead);
    q.fail(job.lease(), "bad", Failure::Permanent).await.unwrap();
    sqlx::query("UPDATE jobs SET run_at = now() - interval '90 seconds' WHERE kind = 'thumbnails' AND run_at <= now()")
        .execute(q.pool())
        .await
        .unwrap();

    let stats = q.stats().await.unwrap();
    let by_kind: HashMap<&str, _> = stats.iter().map(|s| (s.kind.as_str(), s)).collect();
    let t = by_kind["thumbnails"];
    assert_eq!((t.ready, t.running, t.delayed, t.dead), (3, 0, 1, 0));
    assert!(t.oldest_ready_secs.unwrap() >= 89.0, "{:?}", t.oldest_ready_secs);
    let e = by_kind["export"];
    assert_eq!((e.ready, e.running, e.delayed, e.dead), (0, 1, 0, 0));
    assert_eq!(e.oldest_ready_secs, None);
    assert_eq!(by_kind["repair"].dead, 1);
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_notify_not_by_its_poll() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let mut waker = JobWaker::new(q.pool()).await;
    let started = std::time::Instant::now();
    let waiting = tokio::spawn(async move { waker.wait(Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.enqueue(&NewJob::new("k", json!({}))).await.unwrap();
    let wake = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("worker never woke").unwrap();
    assert_eq!(wake, Wake::Notified);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn an_idle_worker_falls_back_to_polling() {
    let db = TestDb::migrated().await;
    let q = queue(&db, 4).await;
    let mut waker = JobWaker::new(q.pool()).await;
    assert_eq!(waker.wait(Duration::from_millis(100)).await, Wake::PollInterval);
}

/// Defect: the fence was `(id, attempt)`, and give-back and retry set the
/// attempt back, so a worker that hung on attempt 1 matched the job again
/// after `job cancel` then `job retry` and a new claim of attempt 1: both ran.
/// The lease generation only goes up.
#[tokio::test]
async fn a_lease_never_comes_back_after_cancel_retry_give_back_or_rescue() {
    let db = TestDb::migrated().await;
    let q = Queue::new(db.pool(4).await);
    let id = q.enqueue(&NewJob::new("export", json!({}))).await.unwrap().id();

    // Hung on attempt 1; the operator cancels and retries; a new worker claims attempt 1.
    let hung = q.claim("w1", &KindFilter::All, 1, LEASE).await.unwrap().pop().unwrap();
    assert_eq!(q.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
    q.retry(id).await.unwrap();
    // Not claimed again while the hung run holds its lease; once it learns
    // and stops (or its lease runs out), it is.
    assert!(q.claim("w2", &KindFilter::All, 1, LEASE).await.unwrap().is_empty());
    assert!(q.heartbeat(hung.lease(), LEASE, None).await.is_err());
    q.release(id, "w1").await.unwrap();
    let fresh = q.claim("w2", &KindFilter::All, 1, LEASE).await.unwrap().pop().unwrap();
    assert_eq!((hung.attempt, fresh.attempt), (1, 1), "the same attempt number");
    assert!(fresh.lease_generation > hung.lease_generation);
    assert!(q.heartbeat(hung.lease(), LEASE, None).await.is_err(), "the hung worker's heartbeat matched the new claim");
    assert!(q.complete(hung.lease()).await.is_err());
    q.heartbeat(fresh.lease(), LEASE, None).await.unwrap();

    // Handed back at shutdown, then claimed again under the same attempt number.
    q.give_back(fresh.lease()).await.unwrap();
    let again = q.claim("w3", &KindFilter::All, 1, LEASE).await.unwrap().pop().unwrap();
    assert_eq!(again.attempt, fresh.attempt);
    assert!(matches!(q.heartbeat(fresh.lease(), LEASE, None).await, Err(QueueError::LostLease { .. })));

    // Rescued after its lease expired.
    sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(q.pool())
        .await
        .unwrap();
    assert_eq!(q.rescue_expired().await.unwrap().len(), 1);
    assert!(matches!(q.fail(again.lease(), "late", Failure::Transient).await, Err(QueueError::LostLease { .. })));
    let last = q.claim("w4", &KindFilter::All, 1, LEASE).await.unwrap().pop().unwrap();
    q.complete(last.lease()).await.unwrap();
}
