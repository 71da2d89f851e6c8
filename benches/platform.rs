//! Platform detection benchmark (issue 14), against the local fake of Helix
//! (`colony_tests::twitch::FakeTwitch`: the real API cannot be reached from
//! here) and the live test source:
//!
//! 1. **Cost.** N Twitch channels (10,000 by default, 5% of them live): the
//!    Helix requests one probe of all of them takes, and the time of a
//!    `mothership tick` that probes them all, as cron runs it.
//!    The same for Kick (`colony_tests::kick::FakeKick`, 50 a request) and
//!    YouTube (`colony_tests::youtube::FakeYouTube`: a feed request per
//!    channel, `videos.list` 50 ids a quota unit), at --other-channels.
//! 2. **Go-live to first segment.** Under `mothership run --every 1s` with
//!    polling every `--probe-every` (5 s), channels go live one after the
//!    other at random moments; from the moment a channel is live on the
//!    platform to its first segment stored.
//!
//! It runs the release binaries: `cargo build --release --workspace`, then
//! `target/release/platform-bench`.

use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::twitch::FakeTwitch;
use rand::Rng;

#[derive(Debug, Parser)]
struct Args {
    /// Twitch channels in the cost part.
    #[arg(long, default_value_t = 10_000)]
    channels: usize,
    /// Kick and YouTube channels in the cost part.
    #[arg(long, default_value_t = 1_000)]
    other_channels: usize,
    /// Timed ticks in the cost part.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Channels that go live in the latency part.
    #[arg(long, default_value_t = 7)]
    go_lives: usize,
    /// The probe interval in the latency part.
    #[arg(long, default_value = "5s")]
    probe_every: humantime::Duration,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cost(&args).await?;
    cost_kick(&args).await?;
    cost_youtube(&args).await?;
    go_live(&args).await?;
    Ok(())
}

async fn cost(args: &Args) -> anyhow::Result<()> {
    let twitch = FakeTwitch::start().await;
    let colony = Colony::new(Rig::file().await);
    let logins: Vec<String> = (0..args.channels).map(|i| format!("bench{i:06}")).collect();
    for l in &logins {
        twitch.add_user(l);
    }
    for l in logins.iter().step_by(20) {
        twitch.go_live(l, "a benchmark", "Software and Game Development");
    }
    let rows: Vec<(String, String, Option<String>)> = logins.iter().map(|l| (l.clone(), l.clone(), None)).collect();
    colony.add_platform_channels("twitch", "https://www.twitch.tv/", &rows).await;
    let (per_probe, tick) = timed_ticks(
        &colony,
        args.rounds,
        &twitch.env(),
        || twitch.clear_requests(),
        || twitch.requests("/helix/streams"),
    )
    .await?;
    println!(
        "cost: {} Twitch channels, {} live: {per_probe:.0} Helix requests a probe (ceil(N/100) = {}), \
         median tick {tick:.2}s; at a 15 s probe interval {:.0} requests a minute of the 800-point bucket",
        args.channels,
        args.channels.div_ceil(20),
        args.channels.div_ceil(100),
        per_probe * 4.0
    );
    Ok(())
}

/// Timed ticks with `env`; after each, `count()` says what the probe cost.
async fn timed_ticks(
    colony: &Colony,
    rounds: usize,
    env: &[(&'static str, String)],
    mut reset: impl FnMut(),
    mut count: impl FnMut() -> usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut times, mut requests) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        reset();
        let mut cmd = colony.command(&["tick", "--json"]);
        cmd.envs(env.iter().cloned()).env("COLONY_MAX_OBSERVERS", "0").env("COLONY_PROBE_TIMEOUT", "60s");
        let started = Instant::now();
        let out = cmd.output().await?;
        let took = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            matches!(out.status.code(), Some(0 | 4)),
            "tick failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM channels WHERE live").fetch_one(&colony.rig.pool).await?;
        let requests_now = count();
        println!("round {round}: tick {took:.2}s, {requests_now} requests, {live} live");
        times.push(took);
        requests.push(requests_now as f64);
    }
    Ok((median(requests), median(times)))
}

async fn cost_kick(args: &Args) -> anyhow::Result<()> {
    let kick = colony_tests::kick::FakeKick::start().await;
    let colony = Colony::new(Rig::file().await);
    let rows: Vec<(String, String, Option<String>)> =
        (0..args.other_channels).map(|i| format!("kbench-{i:05}")).map(|slug| (slug.clone(), slug, None)).collect();
    for (slug, _, _) in &rows {
        kick.add_channel(slug);
    }
    for (slug, _, _) in rows.iter().step_by(20) {
        kick.go_live(slug, "a benchmark", "Just Chatting");
    }
    colony.add_platform_channels("kick", "https://kick.com/", &rows).await;
    let (per_probe, tick) = timed_ticks(
        &colony,
        args.rounds,
        &kick.env(),
        || kick.clear_requests(),
        || kick.requests("/public/v1/channels"),
    )
    .await?;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM channels WHERE live").fetch_one(&colony.rig.pool).await?;
    println!(
        "cost: {} Kick channels, {live} live: {per_probe:.0} requests a probe (ceil(N/50) = {}), median tick {tick:.2}s",
        args.other_channels,
        args.other_channels.div_ceil(50),
    );
    Ok(())
}

async fn cost_youtube(args: &Args) -> anyhow::Result<()> {
    use colony_tests::youtube::{FakeYouTube, Video};
    let youtube = FakeYouTube::start().await;
    let colony = Colony::new(Rig::file().await);
    let mut rows = Vec::new();
    for i in 0..args.other_channels {
        let handle = format!("ybench{i:05}");
        let id = youtube.add_channel(&handle);
        for n in 0..5 {
            youtube.upload(
                &id,
                Video {
                    id: format!("y{i:05}v{n}xxxx"),
                    title: "an upload".into(),
                    state: "none",
                    started_at: None,
                    ended_at: None,
                    published_at: "2026-01-01T00:00:00Z".into(),
                },
            );
        }
        if i % 20 == 0 {
            youtube.go_live(&id, &format!("y{i:05}livexx"), "a benchmark");
        }
        rows.push((handle.clone(), handle, Some(id)));
    }
    colony.add_platform_channels("youtube", "https://www.youtube.com/@", &rows).await;
    let (feeds, tick) = timed_ticks(
        &colony,
        args.rounds,
        &youtube.env(),
        || youtube.clear_requests(),
        || youtube.requests("/feeds/videos.xml"),
    )
    .await?;
    let units = youtube.units();
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM channels WHERE live").fetch_one(&colony.rig.pool).await?;
    println!(
        "cost: {} YouTube channels, {live} live: {feeds:.0} feed requests and {units} quota units a probe \
         (ceil(3N/50) = {}), median tick {tick:.2}s; 10,000 units a day last {:.0} probes",
        args.other_channels,
        (3 * args.other_channels).div_ceil(50),
        10_000f64 / units.max(1) as f64,
    );
    Ok(())
}

async fn go_live(args: &Args) -> anyhow::Result<()> {
    let twitch = FakeTwitch::start().await;
    let source = LiveSource::start().await;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await?;
    let colony = Colony::new(Rig::file().await);
    let names: Vec<String> = (0..args.go_lives).map(|i| format!("golive{i}")).collect();
    for name in &names {
        twitch.add_user(name);
        let out = colony.run(&["channel", "add", &format!("https://www.twitch.tv/{name}")]).await;
        anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let resolver = colony_tests::bins::bin("live-source");
    let mut cmd = colony.command(&["run", "--every", "1s"]);
    for (k, v) in twitch.env() {
        cmd.env(k, v);
    }
    cmd.env("COLONY_PROBE_EVERY", args.probe_every.to_string())
        .env("COLONY_RESOLVER_TWITCH", format!("{} resolve http://{} {{url}}", resolver.display(), source.addr))
        .env("COLONY_RESOLVERS", resolver.display().to_string())
        .env("COLONY_HEARTBEAT_TIMEOUT", "30s")
        .env("COLONY_START_GRACE", "30s")
        .stderr(std::process::Stdio::null());
    let mut run = cmd.spawn()?;
    let probe_every: Duration = args.probe_every.into();
    let mut latencies = Vec::new();
    for name in &names {
        let wait = rand::rng().random_range(0.0..probe_every.as_secs_f64());
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let live_at: chrono::DateTime<chrono::Utc> = SystemTime::now().into();
        source.add(name, &media, 3);
        twitch.go_live(name, "going live", "Just Chatting");
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            let first: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                "SELECT min(s.stored_at) FROM segments s JOIN recordings r ON r.id = s.recording_id
                   JOIN channels c ON c.id = r.channel_id WHERE c.login = $1 AND NOT s.is_gap",
            )
            .bind(name)
            .fetch_one(&colony.rig.pool)
            .await?;
            if let Some(first) = first {
                break first;
            }
            anyhow::ensure!(Instant::now() < deadline, "{name}: no segment within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let latency = (first - live_at).num_milliseconds() as f64 / 1000.0;
        println!(
            "{name}: live on the platform to first segment stored: {latency:.2}s (after a random wait of {wait:.1}s)"
        );
        latencies.push(latency);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id().unwrap_or(0) as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let _ = tokio::time::timeout(Duration::from_secs(30), run.wait()).await;
    colony.kill_cells().await;
    let (min, max) = latencies.iter().fold((f64::MAX, 0f64), |(a, b), l| (a.min(*l), b.max(*l)));
    println!(
        "go-live: polling every {}, {} channels: median {:.2}s, min {min:.2}s, max {max:.2}s",
        args.probe_every,
        latencies.len(),
        median(latencies.clone())
    );
    Ok(())
}
