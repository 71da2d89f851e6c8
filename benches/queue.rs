//! Queue benchmark: claim + complete cycles per second with 1, 8 and 32
//! concurrent workers, and the number of double executions (must be 0).
//! Its peer, in the same run on the same cluster: `pgbench` committing one
//! single-row UPDATE per transaction with as many clients.
//!
//! Runs against `--database-url` if given, else against a private cluster
//! with Postgres' durable defaults (fsync and synchronous_commit on), unlike
//! the test cluster. Each run gets a fresh database.
//!
//!     cargo run --release -p colony-bench --bin queue-bench -- --jobs 20000

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use colony::queue::{KindFilter, NewJob, Queue};
use colony_tests::pg::TestDb;

#[derive(Debug, Parser)]
struct Args {
    /// Admin URL of a Postgres server; by default a private durable cluster is started.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Jobs per run.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    workers: Vec<usize>,
    /// Claim batch sizes to measure (1 = claim and complete one job at a time).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batch: Vec<i64>,
    /// Repeat each configuration and report the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds of the peer, `pgbench`, for each worker count (0 skips it).
    #[arg(long, default_value_t = 15)]
    pgbench_secs: u64,
}

struct Run {
    jobs_per_sec: f64,
    doubles: usize,
    unfinished: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = colony_tests::pg::bench_server(args.database_url.as_deref()).await;
    println!("queue benchmark: {} jobs per run, median of {} runs, durable Postgres", args.jobs, args.repeat);
    println!("| workers | claim batch | jobs/s (median) | double executions | unfinished |");
    println!("|---:|---:|---:|---:|---:|");
    for &batch in &args.batch {
        for &workers in &args.workers {
            let mut runs = Vec::new();
            for _ in 0..args.repeat {
                runs.push(run_once(&admin, args.jobs, workers, batch).await?);
            }
            runs.sort_by(|a, b| a.jobs_per_sec.total_cmp(&b.jobs_per_sec));
            let median = &runs[runs.len() / 2];
            let doubles: usize = runs.iter().map(|r| r.doubles).sum();
            let unfinished: i64 = runs.iter().map(|r| r.unfinished).sum();
            println!("| {workers} | {batch} | {:.0} | {doubles} | {unfinished} |", median.jobs_per_sec);
        }
    }
    if args.pgbench_secs > 0 {
        pgbench_peer(&admin, &args.workers, args.pgbench_secs).await?;
    }
    Ok(())
}

/// The peer, on the same cluster in the same run: `pgbench` with one
/// single-row `UPDATE … WHERE id = :id` per transaction, the ceiling for
/// durable commits here, with as many clients as there were workers.
async fn pgbench_peer(admin: &str, clients: &[usize], secs: u64) -> anyhow::Result<()> {
    let db = TestDb::empty_on(admin).await;
    let pool = db.pool(2).await;
    sqlx::query("CREATE TABLE bench (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)").execute(&pool).await?;
    sqlx::query("INSERT INTO bench (id) SELECT generate_series(1, 100000)").execute(&pool).await?;
    pool.close().await;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), "\\set id random(1, 100000)\nUPDATE bench SET n = n + 1 WHERE id = :id;\n")?;
    // Beside the server's initdb (which may be a symlink on PATH), else on PATH.
    let initdb = mothership::pgcluster::PgTools::find()?.bin().join("initdb");
    let pgbench = std::fs::canonicalize(initdb)
        .ok()
        .and_then(|p| Some(p.parent()?.join("pgbench")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "pgbench".into());
    println!(
        "\npeer, same cluster: pgbench -n -j 2 (1 for one client) -T {secs}, one single-row UPDATE per transaction"
    );
    println!("| clients | pgbench tps |");
    println!("|---:|---:|");
    for &clients in clients {
        let threads = clients.min(2).to_string();
        let out = tokio::process::Command::new(&pgbench)
            .args(["-n", "-j", &threads, "-T", &secs.to_string(), "-c", &clients.to_string(), "-f"])
            .arg(script.path())
            .arg(&db.url)
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("running {}: {e}", pgbench.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "pgbench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let tps = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("pgbench printed no tps:\n{text}"))?;
        println!("| {clients} | {tps:.0} |");
    }
    drop(db);
    Ok(())
}

async fn run_once(admin: &str, jobs: usize, workers: usize, batch: i64) -> anyhow::Result<Run> {
    // A fresh database per run, dropped when `db` goes.
    let db = TestDb::migrated_on(admin).await;
    let pool = db.pool(workers as u32 + 2).await;
    let q = Queue::new(pool.clone());
    let all: Vec<NewJob> = (0..jobs).map(|i| NewJob::new("bench", serde_json::json!({ "n": i }))).collect();
    for chunk in all.chunks(5_000) {
        q.enqueue_many(chunk).await?;
    }

    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let me = format!("bench-{w}");
            let mut seen = Vec::new();
            loop {
                let claimed = q.claim(&me, &KindFilter::All, batch, Duration::from_secs(60)).await?;
                if claimed.is_empty() {
                    return anyhow::Ok(seen);
                }
                let leases: Vec<_> = claimed.iter().map(|j| j.lease()).collect();
                seen.extend(claimed.iter().map(|j| j.id));
                if batch == 1 {
                    q.complete(leases[0]).await?;
                } else {
                    let refused = q.complete_many(&leases).await?;
                    anyhow::ensure!(refused.is_empty(), "complete refused {} leases", refused.len());
                }
            }
        }));
    }
    let mut counts: HashMap<i64, u32> = HashMap::new();
    for h in handles {
        for id in h.await?? {
            *counts.entry(id).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'succeeded'").fetch_one(&pool).await?;
    pool.close().await;
    drop(db);
    Ok(Run {
        jobs_per_sec: jobs as f64 / elapsed.as_secs_f64(),
        doubles: counts.values().filter(|n| **n > 1).count() + jobs.saturating_sub(counts.len()),
        unfinished,
    })
}
