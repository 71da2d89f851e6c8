//! A week of live recording, fast-forwarded: a source publishes 302,400
//! two-second segments (7 days) of tiny real MPEG-TS as fast as `--rate`
//! says, and one `observer-cell` records all of it into `file://` storage
//! and a durable Postgres while `ffmpeg -i URL -c copy` records the same
//! source in the same run. The figures that matter: the observer's cost per
//! segment (CPU, bytes written to storage and Postgres) early and late, and
//! its resident memory at segment 1,000 and at the end. They must not grow
//! with the recording's length.
//!
//! The comparison with ffmpeg counts the observer's whole cost: its own CPU
//! and the CPU of the Postgres backends serving its connections (the ledger
//! rows ffmpeg does not write), against ffmpeg's process tree. Peak memory
//! is the kernel's `VmHWM`, not a sampled RSS. `--dir` puts the storage,
//! the spool and the database on a filesystem of your choice (a real disk,
//! or tmpfs such as /dev/shm); the bench prints which one it ran on.
//!
//!     cargo build --release --workspace
//!     ./target/release/week-bench                      # 302,400 segments at 1,000/s
//!     ./target/release/week-bench --segments 20000     # a short run
//!     # the fast-forward source of issue 24's growth finding
//!     ./target/release/week-bench --segments 24000 --rate 100 --segment-secs 1 --window 600 --no-peer
//!
//! `--observer-bin` records with another build (for a before/after).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;
use colony_tests::live::{Container, Profile, media};
use colony_tests::pg::{Role, TestDb};
use tokio::process::{Child, Command};

/// Two-second segments of a 64x36 picture at a few kbit/s: real MPEG-TS that
/// ffmpeg and the observer both accept, small enough to serve a week quickly.
const TINY: Profile = Profile { width: 64, height: 36, segment_secs: 2, total_secs: 20, video_kbps: 16, audio: false };

#[derive(Debug, Parser)]
struct Args {
    /// Segments the source publishes (302,400 two-second segments is 7 days).
    #[arg(long, default_value_t = 302_400)]
    segments: u64,
    /// Segments published per second of wall time.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Each segment's duration in seconds (the source's `EXTINF` and target
    /// duration, and the media's).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    segment_secs: u32,
    /// Segments in the source's live window (default: 3 s of publishing,
    /// between 50 and 9,000).
    #[arg(long)]
    window: Option<u64>,
    /// The observer-cell binary (default: the one beside this benchmark).
    #[arg(long)]
    observer_bin: Option<PathBuf>,
    /// Skip ffmpeg.
    #[arg(long)]
    no_peer: bool,
    /// Skip reading the final VOD playlist back with ffmpeg.
    #[arg(long)]
    no_verify: bool,
    /// Where the storage, the spool, ffmpeg's copy and the benchmark's own
    /// Postgres cluster live (default: the temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The filesystem type `path` lives on, from /proc/mounts (the longest
/// mount point that holds it).
fn fs_type(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((PathBuf::from(f.get(1)?), f.get(2)?.to_string()))
        })
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.as_os_str().len())
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind)
}

/// A process tree's CPU seconds (`kernel::tree_cpu_secs`).
fn tree_cpu(root: u32) -> f64 {
    colony_tests::kernel::tree_cpu_secs(root as i32)
}

/// CPU seconds of Postgres backends by pid, as last read: the backends
/// serving one database role come and go with its pool.
#[derive(Default)]
struct Backends(std::collections::HashMap<i32, f64>);

impl Backends {
    async fn sample(&mut self, pool: &sqlx::PgPool, role: &str) {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()")
                .bind(role)
                .fetch_all(pool)
                .await
                .unwrap_or_default();
        for pid in pids {
            if let Some(stat) = proc_stat(pid as u32) {
                self.0.insert(pid, stat.cpu_secs);
            }
        }
    }

    fn cpu_secs(&self) -> f64 {
        self.0.values().sum()
    }
}

struct Source {
    /// The clock starts at the observer's first playlist request: nothing
    /// leaves the window before it looks.
    started: std::sync::OnceLock<Instant>,
    rate: u64,
    total: u64,
    window: u64,
    segment_secs: u32,
    segments: Vec<Bytes>,
    by_observer: AtomicU64,
    by_ffmpeg: AtomicU64,
}

impl Source {
    fn published(&self) -> u64 {
        let elapsed = self.started.get().map_or(Duration::ZERO, |t| t.elapsed());
        ((elapsed.as_secs_f64() * self.rate as f64) as u64 + self.window).min(self.total)
    }
}

async fn playlist(State(s): State<Arc<Source>>, headers: HeaderMap) -> Response {
    if headers.get(header::USER_AGENT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.starts_with("colony")) {
        s.started.get_or_init(Instant::now);
    }
    let n = s.published();
    let first = n.saturating_sub(s.window);
    let mut out = String::with_capacity(((n - first) * 90 + 200) as usize);
    let secs = s.segment_secs;
    out.push_str(&format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{secs}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"));
    let base = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::Duration::seconds(1_790_000_000);
    for seq in first..n {
        let pdt = base + chrono::Duration::seconds(i64::from(secs) * seq as i64);
        out.push_str(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{secs}.000,\nseg/{seq}.ts\n",
            pdt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
    }
    if n >= s.total {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], out).into_response()
}

async fn segment(State(s): State<Arc<Source>>, headers: HeaderMap, UrlPath(file): UrlPath<String>) -> Response {
    let Some(seq) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let agent = headers.get(header::USER_AGENT).and_then(|a| a.to_str().ok()).unwrap_or_default();
    if agent.starts_with("colony") {
        s.by_observer.fetch_add(1, Ordering::Relaxed);
    } else {
        s.by_ffmpeg.fetch_add(1, Ordering::Relaxed);
    }
    let body = s.segments[(seq % s.segments.len() as u64) as usize].clone();
    ([(header::CONTENT_TYPE, "video/mp2t")], body).into_response()
}

/// What /proc says of a process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStat {
    cpu_secs: f64,
    rss_mib: f64,
    /// The peak resident set so far (`VmHWM`).
    hwm_mib: f64,
    /// Bytes it handed to write(2) and send(2): storage files and Postgres.
    wchar: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    use colony_tests::kernel;
    let pid = pid as i32;
    let (rss_kb, hwm_kb) = kernel::memory_kib(pid)?;
    Some(ProcStat {
        cpu_secs: kernel::stat(pid)?.cpu_secs,
        rss_mib: rss_kb as f64 / 1024.0,
        hwm_mib: hwm_kb as f64 / 1024.0,
        wchar: kernel::written(pid)?,
    })
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    segments: i64,
    at: Duration,
    stat: ProcStat,
    playlist_bytes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("preparing media ...");
    let profile = Profile { segment_secs: args.segment_secs, total_secs: 10 * args.segment_secs, ..TINY };
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, profile)).await?;
    let segments: Vec<Bytes> = media.segments.iter().map(|(p, _)| Bytes::from(std::fs::read(p).unwrap())).collect();
    let segment_bytes = segments.iter().map(|s| s.len()).sum::<usize>() / segments.len();
    // Each load must still hold everything published since the last one (2 s apart).
    let window = args.window.unwrap_or((args.rate * 3).clamp(50, 9_000));
    let source = Arc::new(Source {
        started: std::sync::OnceLock::new(),
        rate: args.rate,
        total: args.segments,
        window,
        segment_secs: args.segment_secs,
        segments,
        by_observer: AtomicU64::new(0),
        by_ffmpeg: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/week/index.m3u8", get(playlist))
        .route("/week/seg/{file}", get(segment))
        .with_state(source.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/week/index.m3u8");

    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let filesystem = fs_type(&base);
    let work = tempfile::Builder::new().prefix("colony-weekbench-").tempdir_in(&base)?;
    // The bench's own cluster on the same filesystem, so the ledger's writes
    // land there too; the postgres user must be able to reach it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let pg_dir = work.path().join("pg");
    let cluster = pg_dir.clone();
    let admin = tokio::task::spawn_blocking(move || colony_tests::pg::start_cluster(&cluster, &[])).await?;
    let db = TestDb::migrated_on(&admin).await;
    let pool = db.pool(2).await;
    let observer_role = url::Url::parse(&db.role_url(Role::Observer))?.username().to_owned();
    let channel: i64 = sqlx::query_scalar(
        "INSERT INTO channels (login, display_name, source_kind, source_url, pipeline) VALUES ('week', 'week', 'hls', $1, '[]') RETURNING id",
    )
    .bind(&url)
    .fetch_one(&pool)
    .await?;
    let cell = uuid::Uuid::new_v4();
    let a = colony::recording::assign_live(&pool, channel, cell).await?;
    let release = std::env::current_exe()?.parent().unwrap().to_owned();
    let observer_bin = args.observer_bin.clone().unwrap_or_else(|| release.join("observer-cell"));
    let media_root = work.path().join("media");
    let mut observer = Command::new(&observer_bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", work.path())
        .env("DATABASE_URL", db.role_url(Role::Observer))
        .env("COLONY_DB_MAX_CONNECTIONS", "2")
        .env("COLONY_STORAGE_URL", format!("file://{}", media_root.display()))
        .env("COLONY_SPOOL_DIR", work.path().join("spool"))
        .env("OBSERVER_RECORDING_ID", a.recording_id.to_string())
        .env("OBSERVER_CHANNEL_ID", channel.to_string())
        .env("OBSERVER_CHANNEL_LOGIN", "week")
        .env("OBSERVER_CHANNEL_NAME", "week")
        .env("COLONY_CELL_ID", cell.to_string())
        .env("COLONY_LEASE_TOKEN", a.lease_token.to_string())
        .env("OBSERVER_STANDBY", "2s")
        .env("COLONY_HEARTBEAT_INTERVAL", "1s")
        .env("OBSERVER_FINALIZE_DEADLINE", "10m")
        .env("COLONY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let observer_pid = observer.id().unwrap();
    let mut ffmpeg: Option<Child> = if args.no_peer {
        None
    } else {
        Some(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-i", &url, "-c", "copy", "-f", "mpegts"])
                .arg(work.path().join("ffmpeg.ts"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?,
        )
    };
    let ffmpeg_pid = ffmpeg.as_ref().and_then(|f| f.id());
    eprintln!(
        "publishing {} segments at {}/s (window {window}, {segment_bytes} B each) to observer-cell{} ...",
        args.segments,
        args.rate,
        if ffmpeg.is_some() { " and ffmpeg -c copy" } else { "" }
    );

    let t0 = Instant::now();
    let playlist_path = media_root.join(format!("channels/week/{}/playlist.m3u8", a.recording_id));
    let mut samples: Vec<Sample> = Vec::new();
    let mut ffmpeg_last = ProcStat::default();
    let mut ffmpeg_tree = 0.0f64;
    let mut backends = Backends::default();
    let mut last_report = Instant::now();
    loop {
        backends.sample(&pool, &observer_role).await;
        if let Some(stat) = proc_stat(observer_pid) {
            let segments: i64 = sqlx::query_scalar("SELECT segment_count FROM recordings WHERE id = $1")
                .bind(a.recording_id)
                .fetch_one(&pool)
                .await?;
            let playlist_bytes = std::fs::metadata(&playlist_path).map(|m| m.len()).unwrap_or(0);
            samples.push(Sample { segments, at: t0.elapsed(), stat, playlist_bytes });
        }
        if let Some(stat) = ffmpeg_pid.and_then(proc_stat) {
            ffmpeg_last = stat;
            ffmpeg_tree = ffmpeg_tree.max(tree_cpu(ffmpeg_pid.unwrap()));
        }
        if let Ok(Some(_)) = observer.try_wait() {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            let s = samples.last().copied();
            eprintln!(
                "{:>4.0}s published {:>7}, observer stored {:>7}, ffmpeg fetched {:>7}, observer RSS {:.1} MiB",
                t0.elapsed().as_secs_f64(),
                source.published(),
                s.map_or(0, |s| s.segments),
                source.by_ffmpeg.load(Ordering::Relaxed),
                s.map_or(0.0, |s| s.stat.rss_mib)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let observer_out = observer.wait_with_output().await?;
    let finished = t0.elapsed();
    if let Some(mut f) = ffmpeg.take() {
        // ffmpeg ends on ENDLIST; give it a moment, then stop it.
        let _ = tokio::time::timeout(Duration::from_secs(30), f.wait()).await;
        let _ = f.start_kill();
        let _ = f.wait().await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM segments WHERE recording_id = $1 AND NOT is_gap")
        .bind(a.recording_id)
        .fetch_one(&pool)
        .await?;
    let state: String = sqlx::query_scalar("SELECT state::text FROM recordings WHERE id = $1")
        .bind(a.recording_id)
        .fetch_one(&pool)
        .await?;

    let reasons: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT gap_reason, count(*), sum(gap_count)::bigint FROM segments
          WHERE recording_id = $1 AND is_gap GROUP BY gap_reason ORDER BY 3 DESC LIMIT 5",
    )
    .bind(a.recording_id)
    .fetch_all(&pool)
    .await?;
    let at = |n: i64| samples.iter().copied().find(|s| s.segments >= n);
    let cost = |from: i64, to: i64| -> Option<(f64, f64, f64)> {
        let (a, b) = (at(from)?, at(to)?);
        let n = (b.segments - a.segments).max(1) as f64;
        Some((
            (b.stat.cpu_secs - a.stat.cpu_secs) / n * 1e6,
            (b.stat.wchar - a.stat.wchar) as f64 / n,
            (b.at - a.at).as_secs_f64() / n * 1e6,
        ))
    };
    let last = samples.iter().copied().rfind(|s| s.segments > 0).unwrap();
    let end = last.segments;
    // The same span early and late; the late one stops 1k short of the end,
    // so the finalize (the VOD playlist, streamed from the ledger) is apart.
    let early = cost(1_000, 11_000.min(end));
    let late = cost((end - 11_000).max(1_000), (end - 1_000).max(1_001));
    let finalize_cpu = at(end - 1_000).map(|s| last.stat.cpu_secs - s.stat.cpu_secs);
    println!(
        "\nweek benchmark: {} {}-second segments ({:.1} days), {} B each, published at {}/s; observer {}; \
         storage, spool and Postgres on {filesystem} ({})",
        args.segments,
        args.segment_secs,
        args.segments as f64 * f64::from(args.segment_secs) / 86_400.0,
        segment_bytes,
        args.rate,
        observer_bin.display(),
        base.display()
    );
    println!(
        "\n| observer | CPU µs per segment | bytes written per segment (storage + Postgres) | RSS MiB | live playlist bytes |"
    );
    println!("|---|---:|---:|---:|---:|");
    if let Some((cpu, bytes, _)) = early {
        let s = at(1_000).unwrap();
        println!(
            "| segments 1k-11k (RSS at 1k) | {cpu:.0} | {bytes:.0} | {:.1} | {} |",
            s.stat.rss_mib, s.playlist_bytes
        );
    }
    if let Some((cpu, bytes, _)) = late {
        let s = at(end - 1_000).unwrap();
        println!(
            "| segments {}k-{}k (RSS at {end}) | {cpu:.0} | {bytes:.0} | {:.1} | {} |",
            (end - 11_000) / 1000,
            (end - 1_000) / 1000,
            last.stat.rss_mib,
            s.playlist_bytes
        );
    }
    if let Some(cpu) = finalize_cpu {
        println!("\nthe last 1k segments and the finalize (VOD playlist of every row, streamed): {cpu:.2} CPU s");
    }
    if let (Some(e), Some(l)) = (early, late) {
        println!("\nlate / early: CPU per segment {:.2}x, bytes per segment {:.2}x", l.0 / e.0, l.1 / e.1);
    }
    // Ten-second spans swing by tens of percent on a shared 2-core VM
    // (issue 24: the same build gave 0.86x and 1.47x without ffmpeg); thirds
    // of the run average that out, and are the growth check.
    let span = end.saturating_sub(2_000) / 3;
    if span >= 1_000 {
        let bounds = [1_000, 1_000 + span, 1_000 + 2 * span, end - 1_000];
        let thirds: Vec<f64> = bounds.windows(2).filter_map(|w| cost(w[0], w[1]).map(|c| c.0)).collect();
        if let [first, middle, last] = thirds[..] {
            println!(
                "\nby thirds (segments {}k-{}k, {}k-{}k, {}k-{}k): CPU per segment {first:.0}, {middle:.0}, {last:.0} µs; \
                 last / first third: {:.2}x",
                bounds[0] / 1000,
                bounds[1] / 1000,
                bounds[1] / 1000,
                bounds[2] / 1000,
                bounds[2] / 1000,
                bounds[3] / 1000,
                last / first
            );
        }
    }
    let peak_rss = samples.iter().map(|s| s.stat.hwm_mib).fold(0.0, f64::max);
    let observer_cpu = last.stat.cpu_secs;
    let backend_cpu = backends.cpu_secs();
    println!(
        "\nobserver: {stored} of {} segments stored ({:.2}%), state {state}, exit {:?}, {:.1} CPU s in all \
         ({:.0} µs per stored segment), peak RSS (VmHWM) {peak_rss:.1} MiB, {:.0} s to the end including the finalize",
        args.segments,
        100.0 * stored as f64 / args.segments as f64,
        observer_out.status.code(),
        observer_cpu,
        observer_cpu / stored.max(1) as f64 * 1e6,
        finished.as_secs_f64()
    );
    println!(
        "its Postgres backends: {backend_cpu:.1} CPU s ({:.0} µs per stored segment) over {} connection(s)",
        backend_cpu / stored.max(1) as f64 * 1e6,
        backends.0.len()
    );
    let holes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT s + 1, next - 1 FROM (
             SELECT media_sequence + greatest(gap_count, 1) - 1 AS s,
                    lead(media_sequence) OVER (ORDER BY epoch, media_sequence) AS next
               FROM segments WHERE recording_id = $1) x
          WHERE next > s + 1 LIMIT 10",
    )
    .bind(a.recording_id)
    .fetch_all(&pool)
    .await?;
    let (first, last_seq): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(media_sequence), max(media_sequence) FROM segments WHERE recording_id = $1")
            .bind(a.recording_id)
            .fetch_one(&pool)
            .await?;
    if !holes.is_empty() || first != Some(0) || last_seq != Some(args.segments as i64 - 1) {
        println!("LEDGER HOLES (neither stored nor a gap): {holes:?}; sequences {first:?}..={last_seq:?}");
    }
    for (reason, rows, segments) in &reasons {
        println!("gaps: {segments} segment(s) in {rows} row(s): {}", reason.as_deref().unwrap_or("(no reason)"));
    }
    if !args.no_peer {
        let fetched = source.by_ffmpeg.load(Ordering::Relaxed);
        let ffmpeg_cpu = ffmpeg_tree.max(ffmpeg_last.cpu_secs);
        let ffmpeg_per = ffmpeg_cpu / fetched.max(1) as f64;
        println!(
            "ffmpeg -c copy: fetched {fetched} segments, {ffmpeg_cpu:.1} CPU s for its process tree ({:.0} µs per fetched segment), peak RSS (VmHWM) {:.1} MiB",
            ffmpeg_per * 1e6,
            ffmpeg_last.hwm_mib
        );
        println!(
            "\n| per segment, CPU | observer | observer + its Postgres backends | ffmpeg -c copy (tree) |\n|---|---:|---:|---:|\n\
             | µs | {:.0} | {:.0} | {:.0} |\n| / ffmpeg | {:.2}x | {:.2}x | 1.00x |",
            observer_cpu / stored.max(1) as f64 * 1e6,
            (observer_cpu + backend_cpu) / stored.max(1) as f64 * 1e6,
            ffmpeg_per * 1e6,
            (observer_cpu / stored.max(1) as f64) / ffmpeg_per,
            ((observer_cpu + backend_cpu) / stored.max(1) as f64) / ffmpeg_per
        );
    }
    if !observer_out.status.success() {
        eprintln!("observer stderr:\n{}", String::from_utf8_lossy(&observer_out.stderr));
    }
    if !args.no_verify {
        verify(&playlist_path).await;
    }
    pool.close().await;
    drop(db);
    tokio::task::spawn_blocking(move || colony_tests::pg::stop_cluster(&pg_dir)).await?;
    Ok(())
}

/// Read the whole VOD playlist back with ffmpeg.
async fn verify(playlist: &Path) {
    let started = Instant::now();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", "error", "-i"])
        .arg(playlist)
        .args(["-c", "copy", "-f", "null", "-progress", "pipe:1", "-"])
        .output()
        .await
        .unwrap();
    let read_us: i64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.parse().ok())
        .next_back()
        .unwrap_or(0);
    let size = std::fs::metadata(playlist).map(|m| m.len()).unwrap_or(0);
    println!(
        "VOD playlist: {:.1} MB; ffmpeg read it start to end: {} ({:.1} days of media, {:.0} s)",
        size as f64 / 1e6,
        if out.status.success() { "ok" } else { "FAILED" },
        read_us as f64 / 1e6 / 86_400.0,
        started.elapsed().as_secs_f64()
    );
}
