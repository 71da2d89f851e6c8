//! Tick benchmark: observe + plan + save (launcher calls excluded) on a large
//! colony, the planner alone on the same observed state, and one `/metrics`
//! page computed from the same database.
//!
//! State: 10,000 channels (1,000 live, 950 of them with a healthy observer),
//! 2,000 active cells (950 observers, 1,050 harvest cells), and 1,000,000
//! jobs (900k succeeded, 80k ready, 10k running, 5k delayed, 5k dead).
//! Durable Postgres (fsync on), as in the queue bench.
//!
//!     cargo run --release -p colony-bench --bin tick-bench

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use colony_planner::model::{CellKind, Instance};
use colony_planner::policy::Policy;
use colony_tests::pg::TestDb;
use mothership::launcher::{CellSpec, LaunchError, Launcher};
use mothership::probe::ProbeArgs;
use mothership::tick::{SavedPlan, TickCtx, observe_plan_save};

#[derive(Debug, Parser)]
struct Args {
    /// Admin URL of a Postgres server; by default a private durable cluster is started.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    channels: i64,
    #[arg(long, default_value_t = 1_000)]
    live: i64,
    #[arg(long, default_value_t = 1_000_000)]
    jobs: i64,
    /// Timed observe+plan+save rounds.
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Timed planner-only rounds.
    #[arg(long, default_value_t = 201)]
    plan_rounds: usize,
}

/// The backend's listing, precomputed: launcher calls are excluded.
struct Listed(Vec<Instance>);

#[async_trait::async_trait]
impl Launcher for Listed {
    fn backend(&self) -> &'static str {
        "process"
    }
    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        Ok(self.0.clone())
    }
    async fn start(&self, _: &CellSpec) -> Result<String, LaunchError> {
        unreachable!("the benchmark does not act")
    }
    async fn stop(&self, _: &str, _: Option<uuid::Uuid>, _: &str) -> Result<(), LaunchError> {
        unreachable!("the benchmark does not act")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn seed(pool: &sqlx::PgPool, a: &Args) -> anyhow::Result<()> {
    let observed = a.live * 95 / 100;
    let harvest = 2_000 - observed;
    let steps: Vec<(String, String)> = vec![
        ("channels".into(), format!(
            "INSERT INTO channels (login, display_name, source_kind, source_url, live, live_since, probed_at)
             SELECT 'ch' || g, 'Channel ' || g, 'hls', 'http://127.0.0.1:9/' || g || '.m3u8',
                    g <= {live}, CASE WHEN g <= {live} THEN now() - g * interval '1 second' END, now()
               FROM generate_series(1, {channels}) g", live = a.live, channels = a.channels)),
        ("recordings".into(), format!(
            "INSERT INTO recordings (channel_id, source, storage_prefix, lease_token)
             SELECT id, 'live', 'channels/' || login || '/x', 1 FROM channels WHERE id <= {observed}")),
        ("observer cells".into(), format!(
            "INSERT INTO cells (id, kind, backend, backend_ref, channel_id, recording_id, lease_token, state, last_heartbeat)
             SELECT gen_random_uuid(), 'observer', 'process', (100000 + c.id)::text, c.id, r.id, 1, 'running', now()
               FROM channels c JOIN recordings r ON r.channel_id = c.id WHERE c.id <= {observed}")),
        ("harvest cells".into(), format!(
            "INSERT INTO cells (id, kind, backend, backend_ref, state, last_heartbeat)
             SELECT gen_random_uuid(), 'harvest', 'process', (200000 + g)::text, 'running', now()
               FROM generate_series(1, {harvest}) g")),
        ("jobs".into(), format!(
            "INSERT INTO jobs (kind, args, state, run_at, attempt, finalized_at)
             SELECT (ARRAY['vod_download','thumbnails','export','reencode'])[1 + g % 4], jsonb_build_object('n', g),
                    CASE WHEN g <= {succeeded} THEN 'succeeded'::job_state
                         WHEN g <= {ready} THEN 'available'::job_state
                         WHEN g <= {delayed} THEN 'retryable'::job_state
                         ELSE 'dead'::job_state END,
                    CASE WHEN g > {ready} AND g <= {delayed} THEN now() + interval '1 hour' ELSE now() - interval '1 minute' END,
                    1, CASE WHEN g <= {succeeded} THEN now() END
               FROM generate_series(1, {n}) g",
            n = a.jobs - 10_000, succeeded = a.jobs * 9 / 10, ready = a.jobs * 9 / 10 + 80_000,
            delayed = a.jobs * 9 / 10 + 85_000)),
        ("running jobs".into(),
            "INSERT INTO jobs (kind, args, state, attempt, attempted_by, lease_until)
             SELECT 'vod_download', '{}', 'running', 1, id::text, now() + interval '1 minute'
               FROM cells, generate_series(1, 10) WHERE kind = 'harvest'".into()),
        // Each open recording has 100 segments in its ledger, for the
        // per-channel lag that /metrics reads.
        ("segments".into(), format!(
            "INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs, bytes, object_key, source, stored_at)
             SELECT r.id, 0, g, 2.0, 1000000, r.storage_prefix || '/e0/' || g || '.ts', 'live',
                    now() - (100 - g) * interval '2 seconds'
               FROM recordings r, generate_series(0, {segments} - 1) g", segments = 100)),
        ("analyze".into(), "VACUUM ANALYZE".into()),
    ];
    for (what, sql) in steps {
        let started = Instant::now();
        sqlx::query(&sql).execute(pool).await?;
        eprintln!("seeded {what} in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = colony_tests::pg::bench_server(args.database_url.as_deref()).await;
    let db = TestDb::migrated_on(&admin).await;
    let pool = db.pool(8).await;
    seed(&pool, &args).await?;
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM channels), (SELECT count(*) FROM channels WHERE live),
                (SELECT count(*) FROM cells WHERE state IN ('starting', 'running', 'stopping')), (SELECT count(*) FROM jobs)",
    )
    .fetch_one(&pool)
    .await?;
    let listing: Vec<Instance> = sqlx::query_as::<_, (uuid::Uuid, String, String)>(
        "SELECT id, backend_ref, kind::text FROM cells WHERE state IN ('starting', 'running', 'stopping')",
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|(id, r, k)| Instance { backend_ref: r, cell_id: Some(id), kind: CellKind::parse(&k), running: true })
    .collect();
    let launcher = Listed(listing);
    let policy = Policy { max_harvest: 2_000, max_observers: 2_000, ..Policy::default() };
    let probe = ProbeArgs {
        probe_every: "1h".parse().unwrap(),
        probe_timeout: "1s".parse().unwrap(),
        probe_concurrency: 1,
        probe_frozen_after: "90s".parse().unwrap(),
        limits: Default::default(),
        resolvers: Default::default(),
        platforms: Default::default(),
    };
    let ctx = TickCtx {
        pool: &pool,
        launcher: &launcher,
        policy: &policy,
        probe: &probe,
        cell_env: Default::default(),
        deadline: Duration::from_secs(120),
        webhook_budget: Duration::from_secs(20),
    };

    // Warm the caches once, as a running mothership would have.
    let SavedPlan { observed, plan, .. } = observe_plan_save(&ctx, Utc::now()).await?;
    let mut tick_times = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        observe_plan_save(&ctx, Utc::now()).await?;
        tick_times.push(started.elapsed());
    }
    let now = Utc::now();
    let mut plan_times = Vec::new();
    for _ in 0..args.plan_rounds {
        let started = Instant::now();
        std::hint::black_box(colony_planner::plan(std::hint::black_box(&observed), &policy, now));
        plan_times.push(started.elapsed());
    }
    // Reference points measured in the same run: one round trip, and a plain
    // count over the whole jobs table (what a naive observe would pay).
    let mut ping = Vec::new();
    let mut count_all = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&pool).await?;
        ping.push(started.elapsed());
        let started = Instant::now();
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs").fetch_one(&pool).await?;
        count_all.push(started.elapsed());
    }

    // What Prometheus costs: one /metrics page computed from Postgres,
    // without the server's cache.
    let mut scrape_times = Vec::new();
    let mut page_bytes = 0;
    for _ in 0..args.rounds {
        let started = Instant::now();
        page_bytes = mothership::web::metrics::render(&pool).await?.len();
        scrape_times.push(started.elapsed());
    }

    println!(
        "tick benchmark: {} channels ({} live), {} active cells, {} jobs; plan has {} action(s)",
        counts.0,
        counts.1,
        counts.2,
        counts.3,
        plan.actions.len()
    );
    println!("| measure | median | p90 | rounds |");
    println!("|---|---:|---:|---:|");
    println!(
        "| observe + plan + save | {} | {} | {} |",
        ms(median(tick_times.clone())),
        ms(p90(tick_times)),
        args.rounds
    );
    println!(
        "| /metrics scrape, uncached ({} kB) | {} | {} | {} |",
        page_bytes / 1000,
        ms(median(scrape_times.clone())),
        ms(p90(scrape_times)),
        args.rounds
    );
    println!("| planner alone | {} | {} | {} |", ms(median(plan_times.clone())), ms(p90(plan_times)), args.plan_rounds);
    println!("| peer: `SELECT 1` round trip | {} | {} | {} |", ms(median(ping.clone())), ms(p90(ping)), args.rounds);
    println!(
        "| peer: `SELECT count(*) FROM jobs` | {} | {} | {} |",
        ms(median(count_all.clone())),
        ms(p90(count_all)),
        args.rounds
    );
    Ok(())
}
