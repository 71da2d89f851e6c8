//! Chat ingest benchmark (issue 16): one observer cell recording a Twitch
//! channel's video from the live test source and its chat from the fake
//! chat server (`colony_tests::chat::FakeChat`: Twitch's chat cannot be
//! reached from here), at steady chat rates of 1k, 10k and 50k messages a
//! minute. For each rate, the same observer records the same video for the
//! same time with chat off (`--no-chat`), in the same run: the difference
//! is what chat costs.
//!
//! Reported per rate: CPU seconds of the observer process (user + system,
//! from /proc) over the window, CPU-s per 10,000 messages (chat on minus
//! chat off, divided by the messages in the window), and the process's peak
//! RSS (VmHWM) with chat on and off. Every message the fake chat sent must
//! be in the recording's chat chunks once the observer has exited; the
//! bench fails if one is missing.
//!
//!     cargo build --release --workspace && target/release/chat-bench
//!     target/debug/chat-bench --seconds 10      # a short form

use std::time::{Duration, Instant};

use clap::Parser;
use colony_tests::chat::{FakeChat, Step};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::observer::Rig;

#[derive(Debug, Parser)]
struct Args {
    /// Admin URL of a Postgres server; by default a private durable cluster is started.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// How long each measured window lasts.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Chat rates, in messages a minute.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    rates: Vec<u64>,
}

/// User + system CPU seconds and peak RSS (KiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let pid = pid as i32;
    let cpu = colony_tests::kernel::stat(pid).map_or(0.0, |s| s.cpu_secs);
    let hwm = colony_tests::kernel::memory_kib(pid).map_or(0, |(_, hwm)| hwm);
    (cpu, hwm)
}

struct Run {
    cpu_secs: f64,
    peak_rss_kib: u64,
    messages: u64,
}

/// One observer for `seconds`, with chat at `rate` a minute or none. The
/// chat stops at the end of the window; once the observer has exited, every
/// message the fake sent must be in the recording's chat chunks.
async fn measure(rig: &Rig, source: &LiveSource, channel: i64, rate: Option<u64>, seconds: u64) -> anyhow::Result<Run> {
    const SETTLE: u64 = 3;
    let per_second = rate.map_or(0, |r| (r / 60).max(1)) as u32;
    // The chat runs through the settle and the window, so the window is all steady state.
    let total = per_second as usize * (SETTLE + seconds) as usize;
    let script = vec![Step::Burst { messages: total, per_second }];
    let chat = FakeChat::start("benchy", if rate.is_some() { script } else { vec![] }).await;
    let (cell, a) = rig.assign(channel).await;
    let template = Rig::twitch_resolver(source);
    let mut cmd = rig.observer_command(channel, "benchy", cell, a, &[]);
    cmd.env("COLONY_RESOLVER_TWITCH", template).env("OBSERVER_TWITCH_CHAT_URL", chat.url()).env("COLONY_LOG", "warn");
    if rate.is_none() {
        cmd.arg("--no-chat");
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    // Settle: the first segments and the chat login.
    tokio::time::sleep(Duration::from_secs(SETTLE)).await;
    let (cpu0, _) = usage(pid);
    let sent0 = chat.sent().len();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, hwm) = usage(pid);
    let in_window = (chat.sent().len() - sent0) as u64;
    let elapsed = started.elapsed().as_secs_f64();
    // Let the burst finish and the observer read it, then stop the observer.
    let drain = Instant::now();
    while chat.sent().len() < total && drain.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    colony_tests::observer::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let exited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let _ = child.start_kill();
    anyhow::ensure!(exited.is_ok(), "the observer did not exit within 30 s of SIGTERM");
    // Each login is answered with a ROOMSTATE (the channel's modes), which the
    // observer keeps as an event, and which the fake does not list as sent.
    let sent = chat.sent().len() as u64 + chat.connections() as u64;
    let stored: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(messages), 0)::bigint FROM chat_chunks WHERE recording_id = $1")
            .bind(a.recording_id)
            .fetch_one(&rig.pool)
            .await?;
    eprintln!(
        "  {:>6} msg/min: {in_window} messages in {elapsed:.1} s, {:.2} CPU-s, peak RSS {} MiB; {stored} of {sent} sent stored",
        rate.map_or("off".to_owned(), |r| r.to_string()),
        cpu1 - cpu0,
        hwm / 1024
    );
    anyhow::ensure!(
        stored as u64 == sent,
        "the recording's chat holds {stored} message(s), but the chat server sent {sent} (its messages and a ROOMSTATE a login)"
    );
    Ok(Run { cpu_secs: cpu1 - cpu0, peak_rss_kib: hwm, messages: in_window })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = colony_tests::pg::bench_server(args.database_url.as_deref()).await;
    let rig = Rig::file_on(&admin).await;
    let ts = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await?;
    let source = LiveSource::start().await;
    source.add("benchy", &ts, 6);
    let channel = rig.twitch_channel("benchy").await;

    println!("chat ingest: one observer, {} s windows, video from the live test source in both runs", args.seconds);
    println!(
        "| rate (msg/min) | messages | CPU-s chat on | CPU-s chat off | CPU-s per 10k msgs (on - off) | peak RSS on | peak RSS off |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for rate in &args.rates {
        let on = measure(&rig, &source, channel, Some(*rate), args.seconds).await?;
        let off = measure(&rig, &source, channel, None, args.seconds).await?;
        let per_10k = (on.cpu_secs - off.cpu_secs).max(0.0) / on.messages.max(1) as f64 * 10_000.0;
        println!(
            "| {rate} | {} | {:.2} | {:.2} | {:.3} | {} MiB | {} MiB |",
            on.messages,
            on.cpu_secs,
            off.cpu_secs,
            per_10k,
            on.peak_rss_kib / 1024,
            off.peak_rss_kib / 1024
        );
    }
    Ok(())
}
