//! Harvest benchmarks.
//!
//! `download`: a 1.5 GB HLS VOD (1,000 segments of 1080p at 6 Mbit/s, the
//! test source's media repeated) served over loopback, downloaded by one
//! `harvest-cell` into `file://` storage and into Garage, side by side with
//! `yt-dlp -N 8` and `streamlink` writing the same VOD to local disk, and
//! eight parallel curls to /dev/null as the ceiling of the source.
//!
//! `ladder`: the single-pass ABR ladder against three separate ffmpeg runs on
//! the same 60 s 1080p source.
//!
//!     cargo build --release --workspace
//!     ./target/release/harvest-bench download
//!     ./target/release/harvest-bench ladder
//!     ./target/debug/harvest-bench --small ladder    # the tiny form CI runs

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use clap::{Parser, Subcommand};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::pg::{Role, TestDb};
use tokio::process::Command;

#[derive(Debug, Parser)]
struct Args {
    /// Small media (the 1-second test profile for `download`, 10 s of 480p
    /// for `ladder`, one round): the tiny form, for CI.
    #[arg(long, global = true)]
    small: bool,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    Download {
        #[arg(long, default_value_t = 1000)]
        segments: usize,
    },
    Ladder,
}

struct Run {
    name: String,
    secs: f64,
    cpu: f64,
    rss_mb: f64,
    bytes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.bench {
        Bench::Download { segments } => download(segments, args.small).await,
        Bench::Ladder => ladder(args.small).await,
    }
}

async fn timed(name: &str, work: &Path, cmd: Command, bytes_of: impl Fn() -> u64) -> anyhow::Result<Run> {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let timing = work.join(format!("{safe}.time"));
    let program = cmd.as_std().get_program().to_owned();
    let args: Vec<_> = cmd.as_std().get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd.as_std().get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped.arg("-f").arg("%U %S %M").arg("-o").arg(&timing).arg(program).args(args);
    for (k, v) in envs {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let out = wrapped.output().await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&timing)?;
    let v: Vec<f64> =
        text.lines().last().unwrap_or_default().split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Ok(Run { name: name.to_owned(), secs, cpu: v[0] + v[1], rss_mb: v[2] / 1024.0, bytes: bytes_of() })
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() { stack.push(e.path()) } else { total += m.len() }
        }
    }
    total
}

async fn download(segments: usize, small: bool) -> anyhow::Result<()> {
    let profile = if small { Profile::TEST } else { Profile::BENCH_1080P };
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, profile)).await?;
    let source = LiveSource::start().await;
    source.add("vod", &media, segments);
    source.end("vod");
    let url = source.media_url("vod");
    let admin = colony_tests::pg::bench_server(None).await;
    let garage =
        tokio::task::spawn_blocking(|| colony_tests::garage::start(&std::env::temp_dir().join("colony-bench-garage")))
            .await?;
    let work = tempfile::Builder::new().prefix("colony-harvestbench-").tempdir_in(std::env::temp_dir())?;
    let release = std::env::current_exe()?.parent().unwrap().to_owned();
    let mut runs = Vec::new();

    // The ceiling: eight parallel curls to /dev/null.
    let list = work.path().join("urls.txt");
    let playlist = reqwest::get(&url).await?.text().await?;
    let base = url.rsplit_once('/').unwrap().0.to_owned();
    let urls: Vec<String> =
        playlist.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| format!("{base}/{l}")).collect();
    std::fs::write(&list, urls.join("\n"))?;
    let mut curl = Command::new("sh");
    curl.arg("-c").arg(format!("xargs -P 8 -n 16 curl -s -o /dev/null < {}", list.display()));
    let total_bytes: u64 = source
        .published("vod")
        .iter()
        .map(|(seq, _)| source.segment_bytes("vod", *seq).map_or(0, |b| b.len() as u64))
        .sum();
    runs.push(timed("8 curls to /dev/null", work.path(), curl, || total_bytes).await?);

    for (name, storage) in [("harvest-cell -> file://", "file"), ("harvest-cell -> Garage", "garage")] {
        let db = TestDb::migrated_on(&admin).await;
        let pool = db.pool(2).await;
        let channel: i64 = sqlx::query_scalar("INSERT INTO channels (login, display_name, source_kind, source_url, pipeline) VALUES ('bench', 'bench', 'hls', 'http://x/', '[]') RETURNING id")
            .fetch_one(&pool).await?;
        colony::queue::Queue::new(pool.clone())
            .enqueue(&colony::queue::NewJob::new(
                "vod_download",
                serde_json::json!({ "url": url, "channel_id": channel }),
            ))
            .await?;
        let mut cmd = Command::new(release.join("harvest-cell"));
        cmd.args(["--drain", "--kinds", "vod_download"])
            .env("DATABASE_URL", db.role_url(Role::Harvest))
            .env("COLONY_LOG", "warn");
        let media_dir = work.path().join(format!("media-{storage}"));
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        if storage == "file" {
            cmd.env("COLONY_STORAGE_URL", format!("file://{}", media_dir.display()));
        } else {
            for (k, v) in garage.env() {
                cmd.env(k, v);
            }
            cmd.env("COLONY_STORAGE_URL", format!("s3://{}/{prefix}", garage.bucket));
        }
        let stored = media_dir.clone();
        let pool2 = pool.clone();
        let run = timed(name, work.path(), cmd, || if storage == "file" { dir_bytes(&stored) } else { 0 }).await?;
        let (bytes, rows): (i64, i64) =
            sqlx::query_as("SELECT COALESCE(sum(bytes), 0)::bigint, count(*) FROM segments").fetch_one(&pool2).await?;
        anyhow::ensure!(rows as usize == segments, "{name}: {rows} of {segments} segments in the ledger");
        runs.push(Run { bytes: bytes as u64, ..run });
        pool.close().await;
        drop(db);
        let _ = std::fs::remove_dir_all(&media_dir);
    }

    let out = work.path().join("ytdlp.ts");
    let mut cmd = Command::new("yt-dlp");
    cmd.args(["-N", "8", "--quiet", "--no-part", "-o"]).arg(&out).arg(&url);
    let o2 = out.clone();
    runs.push(
        timed("yt-dlp -N 8", work.path(), cmd, move || std::fs::metadata(&o2).map(|m| m.len()).unwrap_or(0)).await?,
    );
    let _ = std::fs::remove_file(&out);
    let out = work.path().join("streamlink.ts");
    let mut cmd = Command::new("streamlink");
    cmd.args(["--loglevel", "error", "-o"]).arg(&out).args([url.as_str(), "best"]);
    let o2 = out.clone();
    runs.push(
        timed("streamlink", work.path(), cmd, move || std::fs::metadata(&o2).map(|m| m.len()).unwrap_or(0)).await?,
    );
    let _ = std::fs::remove_file(&out);

    println!(
        "\nVOD download: {segments} segments, {:.2} GB, 1080p 6 Mbit/s, served over loopback\n",
        total_bytes as f64 / 1e9
    );
    println!("| downloader | seconds | MB/s | CPU s | peak RSS MB | bytes written |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &runs {
        // MB/s over what the source served (curl writes nothing to count).
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.0} | {} |",
            r.name,
            r.secs,
            total_bytes as f64 / 1e6 / r.secs,
            r.cpu,
            r.rss_mb,
            r.bytes
        );
    }
    Ok(())
}

async fn ladder(small: bool) -> anyhow::Result<()> {
    let profile = if small { Profile::SMALL_480P } else { Profile::BENCH_1080P };
    let (seconds, rounds) = if small { (10.0, 1) } else { (60.0, 3) };
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, profile)).await?;
    let work = tempfile::Builder::new().prefix("colony-ladderbench-").tempdir_in(std::env::temp_dir())?;
    // The first 60 s of the 1080p media as a VOD playlist.
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    let mut secs = 0.0;
    for (path, dur) in &media.segments {
        if secs >= seconds {
            break;
        }
        text.push_str(&format!("#EXTINF:{dur:.3},\n{}\n", path.display()));
        secs += dur;
    }
    text.push_str("#EXT-X-ENDLIST\n");
    let input = work.path().join("source.m3u8");
    std::fs::write(&input, text)?;
    let rungs = if small { [480u32, 360, 240] } else { [720u32, 480, 360] };
    // Exactly the job's ffmpeg arguments, for any set of rungs.
    let ladder = |out: &Path, rungs: &[u32]| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-y"]).args(harvest_cell::jobs::reencode::ladder_args(
            &input.display().to_string(),
            &out.display().to_string(),
            rungs,
            true,
        ));
        cmd
    };
    let mut results = Vec::new();
    for round in 0..rounds {
        let single_dir = work.path().join(format!("single-{round}"));
        std::fs::create_dir_all(&single_dir)?;
        let single = timed("single pass", work.path(), ladder(&single_dir, &rungs), || 0).await?;
        let mut separate = 0.0;
        let mut separate_cpu = 0.0;
        for h in rungs {
            let dir = work.path().join(format!("sep-{round}-{h}"));
            std::fs::create_dir_all(&dir)?;
            let r = timed("one rung", work.path(), ladder(&dir, &[h]), || 0).await?;
            separate += r.secs;
            separate_cpu += r.cpu;
        }
        results.push((single.secs, single.cpu, separate, separate_cpu));
        eprintln!("round {round}: single {:.1} s, separate {:.1} s", single.secs, separate);
    }
    results.sort_by(|a, b| (a.2 / a.0).total_cmp(&(b.2 / b.0)));
    let (s, sc, p, pc) = results[results.len() / 2];
    let names: Vec<String> = rungs.iter().map(|h| format!("{h}p")).collect();
    println!(
        "\nLadder ({} from {secs:.0} s of {}p, libx264 veryfast), median of {rounds} round(s) by speed-up:\n",
        names.join("/"),
        profile.height
    );
    println!("| method | wall s | CPU s |\n|---|---:|---:|");
    println!("| one ffmpeg, split + scale + var_stream_map | {s:.1} | {sc:.1} |");
    println!("| {} ffmpeg runs, one rung each | {p:.1} | {pc:.1} |", rungs.len());
    println!(
        "\nspeed-up: {:.2}x (all rounds: {})",
        p / s,
        results.iter().map(|r| format!("{:.2}x", r.2 / r.0)).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
