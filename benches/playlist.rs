//! Playlist benchmark: what one request for a long recording's playlist
//! costs the dashboard (issue 22), on S3 storage (a Garage node).
//!
//! A finished recording of `--segments` ledger rows (43,200 by default: a
//! day of 2-second segments) is served by a real `mothership serve`. The
//! playlist names the server's object links, so it signs nothing; each link
//! is a redirect to a presigned URL, signed when the player asks for it.
//! The peer, in the same run, is what the handler did before: presign every
//! segment of the recording on every request, through the same store.
//!
//!     cargo build -p mothership --release && cargo run --release -p colony-bench --bin playlist-bench

use std::time::{Duration, Instant};

use clap::Parser;
use colony::storage::ObjectKey;
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::pg::TestDb;
use colony_tests::web::serve;

#[derive(Debug, Parser)]
struct Args {
    /// Admin URL of a Postgres server; by default a private durable cluster is started.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Ledger rows of the recording.
    #[arg(long, default_value_t = 43_200)]
    segments: i64,
    /// Timed requests of each kind.
    #[arg(long, default_value_t = 11)]
    rounds: usize,
}

const TOKEN: &str = "playlist-bench-token-0123456789abcdefgh";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = colony_tests::pg::bench_server(args.database_url.as_deref()).await;
    let garage = colony_tests::garage::garage();
    let colony = Colony::new(Rig::garage_with(garage, TestDb::migrated_on(&admin).await).await);
    let pool = colony.rig.pool.clone();
    let channel = colony.rig.channel("longday", "http://127.0.0.1:9/x.m3u8").await;
    let prefix = format!("{}/channels/longday/1", colony.rig.bucket_prefix);
    let recording: i64 = sqlx::query_scalar(
        "INSERT INTO recordings (channel_id, source, state, storage_prefix, ended_at)
         VALUES ($1, 'live', 'complete', $2, now()) RETURNING id",
    )
    .bind(channel)
    .bind(&prefix)
    .fetch_one(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs, bytes, object_key, source)
         SELECT $1, 0, n, 2.0, 1000000, $2 || '/e0/' || lpad(n::text, 6, '0') || '.ts', 'live'
           FROM generate_series(0, $3 - 1) AS n",
    )
    .bind(recording)
    .bind(&prefix)
    .bind(args.segments)
    .execute(&pool)
    .await?;
    let (_server, base) = serve(&colony, Some(TOKEN), &[]).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;

    let playlist_url = format!("{base}/media/recordings/{recording}/playlist.m3u8");
    let (mut playlist, mut bytes) = (Vec::new(), 0);
    for _ in 0..args.rounds {
        let started = Instant::now();
        let body = client.get(&playlist_url).bearer_auth(TOKEN).send().await?.error_for_status()?.text().await?;
        playlist.push(started.elapsed());
        bytes = body.len();
    }
    let link = format!("{base}/media/recordings/{recording}/objects/{prefix}/e0/000100.ts");
    let mut redirect = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        let answer = client.get(&link).bearer_auth(TOKEN).send().await?;
        anyhow::ensure!(answer.status().as_u16() == 307, "the object link answered {}", answer.status());
        redirect.push(started.elapsed());
    }
    // The peer: presign every segment, as each request did before.
    let keys: Vec<ObjectKey> = sqlx::query_scalar::<_, String>(
        "SELECT object_key FROM segments WHERE recording_id = $1 ORDER BY media_sequence",
    )
    .bind(recording)
    .fetch_all(&pool)
    .await?
    .iter()
    .map(|k| ObjectKey::parse(k))
    .collect::<Result<_, _>>()?;
    let mut presign_all = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        for key in &keys {
            colony.rig.store.presign_get(key, Duration::from_secs(6 * 3600)).await?;
        }
        presign_all.push(started.elapsed());
    }
    let (now, before) = (median(playlist), median(presign_all));
    println!("playlist-bench: {} segments, {} rounds, S3 (Garage) storage", args.segments, args.rounds);
    println!("| measure | median |");
    println!("|---|---:|");
    println!("| playlist request, object links ({} kB) | {} |", bytes / 1000, ms(now));
    println!("| one object link: lookup + presign + 307 | {} |", ms(median(redirect)));
    println!("| peer: presign every segment (each request before) | {} |", ms(before));
    println!(
        "ratio: the old request signed for {:.1}x the whole new request",
        before.as_secs_f64() / now.as_secs_f64()
    );
    Ok(())
}
