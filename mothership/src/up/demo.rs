//! The demo channel: ffmpeg broadcasts a test pattern as live HLS into
//! `<dir>/demo`, and a loopback HTTP server serves it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use super::tools::Tools;
use super::{DEMO, Layout, say};
use crate::channels::{self, ChannelUpdate, NewChannel};
use crate::views;

pub(super) struct Demo {
    ffmpeg: Child,
    server: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Adds the demo channel when no channel exists; broadcasts it whenever it
    /// exists and is enabled. None when there is nothing to broadcast.
    pub async fn start(
        pool: &PgPool,
        layout: &Layout,
        tools: &Tools,
        length: Duration,
    ) -> anyhow::Result<Option<Self>> {
        let channels = views::channel_status(pool).await?;
        let demo_enabled = match channels.iter().find(|c| c.login == DEMO) {
            Some(c) => c.enabled,
            None if channels.is_empty() => true,
            None => return Ok(None),
        };
        if !demo_enabled {
            return Ok(None);
        }
        if !tools.ffmpeg {
            bail!("the demo channel needs ffmpeg; install it, or pass --no-demo");
        }
        for entry in std::fs::read_dir(&layout.demo)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = format!("http://{addr}/live.m3u8");
        if channels.is_empty() {
            let new = NewChannel::parse(DEMO, &url, Some("Demo (ffmpeg test pattern)".into()), None, None, &[])?;
            channels::add(pool, &new).await?;
            say(format!("no channel configured: added the demo channel '{DEMO}' ({url})"));
        } else {
            let update = ChannelUpdate { source_url: Some(url.clone()), ..Default::default() };
            channels::update(pool, DEMO, &update).await?;
        }
        let dir = layout.demo.clone();
        let server = tokio::spawn(async move {
            let app = axum::Router::new().route("/{file}", axum::routing::get(serve)).with_state(dir);
            let _ = axum::serve(listener, app).await;
        });
        let log = std::fs::File::create(layout.logs.join("demo-ffmpeg.log"))?;
        let seg = layout.demo.join("s%05d.ts");
        let ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &length.as_secs().max(4).to_string()])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(["-b:v", "800k", "-c:a", "aac", "-b:a", "96k"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "6"])
            .args(["-hls_flags", "delete_segments+independent_segments+temp_file"])
            .arg("-hls_segment_filename")
            .arg(&seg)
            .arg(layout.demo.join("live.m3u8"))
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: Ctrl-C reaches `up`, which ends it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting ffmpeg for the demo channel")?;
        say(format!(
            "the demo channel broadcasts a {} test pattern; it ends by itself",
            humantime::format_duration(length)
        ));
        Ok(Some(Self { ffmpeg, server }))
    }

    pub async fn stop(mut self) {
        let _ = self.ffmpeg.start_kill();
        let _ = self.ffmpeg.wait().await;
        self.server.abort();
    }
}

async fn serve(
    axum::extract::State(dir): axum::extract::State<PathBuf>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let safe = !file.is_empty() && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let kind = if file.ends_with(".m3u8") { "application/vnd.apple.mpegurl" } else { "video/mp2t" };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(body) if safe && !file.starts_with('.') => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
