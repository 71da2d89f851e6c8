//! `mothership up`, the README's first command: a private Postgres cluster,
//! file:// storage, the process launcher and a demo channel, from nothing.
//! Ctrl-C stops it cleanly, and running it again picks up.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colony_tests::bins::bin;
use colony_tests::observer::ffmpeg_reads;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `mothership up` on `dir`, with timings short enough for a test.
fn up(dir: &std::path::Path, demo_length: &str) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(bin("mothership"))
        .args(["up", "--dir"])
        .arg(dir)
        .args(["--demo-length", demo_length, "--every", "1s"])
        .env("COLONY_PROBE_EVERY", "0s")
        .env("COLONY_IDLE_COOLDOWN", "0s")
        .env("COLONY_SCALE_DOWN_WINDOW", "0s")
        .env("COLONY_HEARTBEAT_INTERVAL", "1s")
        .env("OBSERVER_STANDBY", "3s")
        .env("OBSERVER_OFFLINE_AFTER", "3s")
        .env("HARVEST_IDLE_EXIT", "2s")
        .env("HARVEST_POLL", "500ms")
        .env_remove("COLONY_STORAGE_URL")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let sink = out.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    (child, out)
}

/// Wait until a line of the output matches; returns that line.
async fn line(out: &Arc<Mutex<String>>, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(l) = out.lock().unwrap().lines().find(|l| pred(l)) {
            return l.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out; `mothership up` said:\n{}", out.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ctrl-C, then a clean exit within `timeout`.
async fn interrupt(mut child: Child, out: &Arc<Mutex<String>>, timeout: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(timeout, child.wait()).await.expect("up did not stop in time").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = out.lock().unwrap().clone();
    assert!(status.success(), "up exited {status}:\n{text}");
    assert!(text.contains("stopped cleanly"), "{text}");
}

fn playlist_in(line: &str) -> std::path::PathBuf {
    line.rsplit("ffplay ").next().unwrap().trim().into()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_records_the_demo_channel_post_processes_it_stops_cleanly_and_picks_up_again() {
    let home = tempfile::tempdir().unwrap();
    // As root, the cluster runs as `postgres`, which must reach the directory.
    std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = home.path().join("colony");

    // First run: from nothing to a finished, post-processed recording.
    let (child, out) = up(&dir, "10s");
    line(&out, SECS(90), |l| l.contains("added the demo channel 'demo'")).await;
    line(&out, SECS(30), |l| l.contains("of demo: recording")).await;
    let done = line(&out, SECS(90), |l| l.contains("of demo: complete")).await;
    let playlist = playlist_in(&done);
    assert!(playlist.starts_with(&dir), "the playlist is under --dir: {done}");
    let secs = ffmpeg_reads(&playlist);
    assert!(secs >= 6.0, "the finished recording plays {secs}s of a 10s broadcast: {done}");
    line(&out, SECS(90), |l| l.contains("(thumbnails): succeeded")).await;
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    assert!(env.contains("DATABASE_URL=postgres://colony:"), "{env}");
    interrupt(child, &out, SECS(60)).await;
    assert!(!dir.join("postgres/data/postmaster.pid").exists(), "Postgres was stopped");

    // Second run: the same cluster and recordings; Ctrl-C mid-broadcast
    // finalizes the recording as interrupted, and it still plays.
    let (child, out) = up(&dir, "120s");
    line(&out, SECS(60), |l| l.contains("starting Postgres")).await;
    assert!(!out.lock().unwrap().contains("creating a private Postgres cluster"));
    assert!(!out.lock().unwrap().contains("added the demo channel"), "the demo channel is not added twice");
    let first_id: i64 = done.split_whitespace().nth(2).unwrap().parse().unwrap();
    let recording = line(&out, SECS(60), |l| l.contains("of demo: recording")).await;
    let second_id: i64 = recording.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(second_id > first_id, "a new recording: {recording}");
    let progress = format!("recording {second_id} of demo: recording, ");
    line(&out, SECS(60), |l| {
        l.split_once(&progress).and_then(|(_, n)| n.split(' ').next()?.parse::<u32>().ok()).is_some_and(|n| n >= 10)
    })
    .await;
    interrupt(child, &out, SECS(90)).await;
    let text = out.lock().unwrap().clone();
    assert!(text.contains("stopping 1 cell(s)"), "{text}");
    let stopped = text
        .lines()
        .find(|l| l.contains(&format!("recording {second_id} of demo: interrupted")))
        .unwrap_or_else(|| panic!("the recording was finalized as interrupted:\n{text}"));
    assert!(ffmpeg_reads(&playlist_in(stopped)) > 5.0, "{stopped}");
}
