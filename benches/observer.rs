//! Observer benchmark: the same live source (1080p, 6 Mbit/s, 2 s segments by
//! default) recorded side by side by `observer-cell`, `streamlink` and
//! `ffmpeg -i URL -c copy`, with CPU seconds and peak RSS from `/usr/bin/time`,
//! completeness and (for the observer) publish-to-stored latency from the
//! source's publish log and the ledger's `stored_at`. With `--channels N`, N
//! observer cells record N channels at once instead (no peers).
//!
//!     cargo build --release --workspace
//!     ./target/release/observer-bench --duration 5m
//!     ./target/release/observer-bench --duration 2m --channels 100

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::pg::{Role, TestDb};
use tokio::process::{Child, Command};

#[derive(Debug, Parser)]
struct Args {
    /// How long to record.
    #[arg(long, default_value = "5m")]
    duration: humantime::Duration,
    /// Record this many channels at once with one observer each (no peers).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Use the small test profile instead of 1080p at 6 Mbit/s.
    #[arg(long)]
    small: bool,
    /// Skip streamlink and ffmpeg.
    #[arg(long)]
    no_peers: bool,
}

struct Measured {
    name: String,
    cpu_secs: f64,
    peak_rss_mb: f64,
    exit: Option<i32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let profile = if args.small { Profile::TEST } else { Profile::BENCH_1080P };
    eprintln!(
        "preparing media ({}x{}, {} kbit/s, {} s segments) ...",
        profile.width, profile.height, profile.video_kbps, profile.segment_secs
    );
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, profile)).await?;
    let admin = colony_tests::pg::bench_server(None).await;
    let db = TestDb::migrated_on(&admin).await;
    let pool = db.pool(4).await;

    let work = tempfile::Builder::new().prefix("colony-obsbench-").tempdir_in(std::env::temp_dir())?;
    let source = LiveSource::start().await;
    let release = std::env::current_exe()?.parent().unwrap().to_owned();
    let mut children: Vec<(String, Child, PathBuf)> = Vec::new();
    let mut recordings = Vec::new();
    let started = SystemTime::now();
    let t0 = Instant::now();
    for i in 0..args.channels {
        let name = format!("ch{i}");
        source.add(&name, &media, 6);
        let channel: i64 = sqlx::query_scalar(
            "INSERT INTO channels (login, display_name, source_kind, source_url, pipeline) VALUES ($1, $1, 'hls', $2, '[]') RETURNING id",
        )
        .bind(&name)
        .bind(source.media_url(&name))
        .fetch_one(&pool)
        .await?;
        let cell = uuid::Uuid::new_v4();
        let a = colony::recording::assign_live(&pool, channel, cell).await?;
        let timing = work.path().join(format!("observer-{i}.time"));
        let mut cmd = timed(&timing, &release.join("observer-cell"));
        cmd.env("DATABASE_URL", db.role_url(Role::Observer))
            .env("COLONY_DB_MAX_CONNECTIONS", "2")
            .env("COLONY_STORAGE_URL", format!("file://{}", work.path().join("media").display()))
            .env("COLONY_SPOOL_DIR", work.path().join("spool"))
            .env("OBSERVER_RECORDING_ID", a.recording_id.to_string())
            .env("OBSERVER_CHANNEL_ID", channel.to_string())
            .env("OBSERVER_CHANNEL_LOGIN", &name)
            .env("OBSERVER_CHANNEL_NAME", &name)
            .env("COLONY_CELL_ID", cell.to_string())
            .env("COLONY_LEASE_TOKEN", a.lease_token.to_string())
            .env("OBSERVER_STANDBY", "3s")
            .env("COLONY_LOG", "warn");
        children.push((format!("observer-cell {i}"), cmd.spawn()?, timing));
        recordings.push((name, a.recording_id));
    }
    if args.channels == 1 && !args.no_peers {
        let url = source.media_url("ch0");
        let timing = work.path().join("streamlink.time");
        let mut cmd = timed(&timing, Path::new("streamlink"));
        cmd.args(["--loglevel", "error", "-o"]).arg(work.path().join("streamlink.ts")).args([url.as_str(), "best"]);
        children.push(("streamlink".into(), cmd.spawn()?, timing));
        let timing = work.path().join("ffmpeg.time");
        let mut cmd = timed(&timing, Path::new("ffmpeg"));
        cmd.args(["-hide_banner", "-loglevel", "error", "-i", url.as_str(), "-c", "copy", "-f", "mpegts"])
            .arg(work.path().join("ffmpeg.ts"));
        children.push(("ffmpeg -c copy".into(), cmd.spawn()?, timing));
    }
    eprintln!("recording {} channel(s) for {} ...", args.channels, args.duration);
    tokio::time::sleep(args.duration.into()).await;
    let recorded_for = t0.elapsed();
    for (name, _) in &recordings {
        source.end(name);
    }
    let mut measured = Vec::new();
    for (name, child, timing) in children {
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await??;
        let (cpu_secs, peak_rss_mb) = read_timing(&timing);
        measured.push(Measured { name, cpu_secs, peak_rss_mb, exit: out.status.code() });
    }

    // Completeness and latency from the source's publish log and the ledger.
    let mut published_total = 0usize;
    let mut stored_total = 0usize;
    let mut latencies = Vec::new();
    for (name, recording) in &recordings {
        let published = source.published(name);
        let rows: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT media_sequence, stored_at FROM segments WHERE recording_id = $1 AND NOT is_gap")
                .bind(recording)
                .fetch_all(&pool)
                .await?;
        let stored: BTreeSet<u64> = rows.iter().map(|r| r.0 as u64).collect();
        published_total += published.len();
        stored_total += published.iter().filter(|p| stored.contains(&p.0)).count();
        for (seq, at) in &published {
            // The initial window is published at once when the channel is
            // added; latency counts segments published while recording.
            if *seq < 6 || *at < started {
                continue;
            }
            if let Some((_, stored_at)) = rows.iter().find(|r| r.0 as u64 == *seq) {
                let published_at = chrono::DateTime::<chrono::Utc>::from(*at);
                latencies.push((*stored_at - published_at).num_milliseconds() as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    let minutes = recorded_for.as_secs_f64() / 60.0;
    let segment_secs = f64::from(profile.segment_secs);

    println!(
        "\nobserver benchmark: {} channel(s), {:.1} min recorded, source {}x{} {} kbit/s {} s segments",
        args.channels, minutes, profile.width, profile.height, profile.video_kbps, profile.segment_secs
    );
    println!("\n| recorder | CPU s | CPU s per minute recorded | peak RSS MB | exit |");
    println!("|---|---:|---:|---:|---:|");
    let observers: Vec<&Measured> = measured.iter().filter(|m| m.name.starts_with("observer-cell")).collect();
    if args.channels > 1 {
        let cpu: f64 = observers.iter().map(|m| m.cpu_secs).sum();
        let rss = observers.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max);
        let ok = observers.iter().filter(|m| m.exit == Some(0)).count();
        println!(
            "| {} observer cells (total) | {cpu:.1} | {:.2} | {rss:.1} (max of one) | {ok} of {} exited 0 |",
            observers.len(),
            cpu / minutes,
            observers.len()
        );
        println!(
            "| per cell (mean) | {:.2} | {:.3} | | |",
            cpu / observers.len() as f64,
            cpu / observers.len() as f64 / minutes
        );
    } else {
        for m in &measured {
            println!(
                "| {} | {:.2} | {:.3} | {:.1} | {:?} |",
                m.name,
                m.cpu_secs,
                m.cpu_secs / minutes,
                m.peak_rss_mb,
                m.exit
            );
        }
    }
    println!(
        "\ncompleteness (observer): {stored_total} of {published_total} published segments stored ({:.2}%)",
        100.0 * stored_total as f64 / published_total.max(1) as f64
    );
    println!(
        "publish-to-stored latency (observer, {} segments published after start): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    if args.channels == 1 && !args.no_peers {
        let published_secs = source.published("ch0").len() as f64 * segment_secs;
        for file in ["streamlink.ts", "ffmpeg.ts"] {
            let secs = probe_duration(&work.path().join(file)).await;
            println!(
                "{file}: {secs:.1} s of media written ({:.1}% of the {published_secs:.0} s published, including up to 3 segments it took from the initial window)",
                100.0 * secs / published_secs
            );
        }
    }
    pool.close().await;
    drop(db);
    Ok(())
}

/// Run `program` under GNU time, writing "user system maxrss_kb" to `out`.
fn timed(out: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f").arg("%U %S %M").arg("-o").arg(out).arg(program);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

fn read_timing(path: &Path) -> (f64, f64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().last().unwrap_or_default();
    let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if v.len() < 3 {
        return (f64::NAN, f64::NAN);
    }
    (v[0] + v[1], v[2] / 1024.0)
}

async fn probe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .await;
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0.0)
}
