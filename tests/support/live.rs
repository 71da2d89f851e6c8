//! A live HLS source for tests and benchmarks. Segments are made once with
//! ffmpeg (testsrc + sine; MPEG-TS or fMP4) and cached; a small axum server
//! replays them over loopback as live channels: a sliding window with rising
//! media sequence numbers, published on a clock. Each channel can on command
//! go offline (404), come back, end (`EXT-X-ENDLIST`), answer errors, stall,
//! jump its sequence, or fail single segments. Serving is a file read per
//! request, so a hundred channels cost next to no CPU.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::proc::{lock, run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Ts,
    Fmp4,
}

/// A set of segments made by ffmpeg, in order, with their durations.
#[derive(Debug, Clone)]
pub struct Media {
    pub container: Container,
    pub dir: PathBuf,
    pub segments: Vec<(PathBuf, f64)>,
    pub init: Option<PathBuf>,
}

/// What to encode.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub width: u32,
    pub height: u32,
    pub segment_secs: u32,
    pub total_secs: u32,
    pub video_kbps: u32,
    pub audio: bool,
}

impl Profile {
    /// Tiny 1-second segments for tests.
    pub const TEST: Profile =
        Profile { width: 192, height: 108, segment_secs: 1, total_secs: 120, video_kbps: 200, audio: true };
    /// 480p in 1-second segments, for re-encode and thumbnail tests.
    pub const SMALL_480P: Profile =
        Profile { width: 854, height: 480, segment_secs: 1, total_secs: 12, video_kbps: 600, audio: true };
    /// The same without an audio track.
    pub const SILENT_480P: Profile =
        Profile { width: 854, height: 480, segment_secs: 1, total_secs: 12, video_kbps: 600, audio: false };
    /// 1080p at 6 Mbit/s in 2-second segments, for benchmarks.
    pub const BENCH_1080P: Profile =
        Profile { width: 1920, height: 1080, segment_secs: 2, total_secs: 330, video_kbps: 6000, audio: true };
}

/// Make (once per machine) or find the segments for a profile.
pub fn media(container: Container, profile: Profile) -> Media {
    let ext = match container {
        Container::Ts => "ts",
        Container::Fmp4 => "m4s",
    };
    let dir = std::env::temp_dir().join(format!(
        "colony-test-media/{}x{}-{}s-{}s-{}k-cbr{}-{ext}",
        profile.width,
        profile.height,
        profile.segment_secs,
        profile.total_secs,
        profile.video_kbps,
        if profile.audio { "" } else { "-silent" }
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let _guard = lock(&dir.join(".lock"));
    let index = dir.join("index.m3u8");
    if !index.exists() {
        let gop = (25 * profile.segment_secs).to_string();
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", &format!("testsrc=size={}x{}:rate=25", profile.width, profile.height)])
            .args(if profile.audio {
                &["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"][..]
            } else {
                &[][..]
            })
            .args(["-t", &profile.total_secs.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"])
            // True constant bitrate (filler data): testsrc alone compresses far
            // below any target, and the benchmarks need real segment sizes.
            .args(["-x264-params", "nal-hrd=cbr:force-cfr=1"])
            .args(["-b:v", &format!("{}k", profile.video_kbps), "-minrate", &format!("{}k", profile.video_kbps)])
            .args(["-maxrate", &format!("{}k", profile.video_kbps)])
            .args(["-bufsize", &format!("{}k", profile.video_kbps * 2)])
            .args(if profile.audio { &["-c:a", "aac", "-b:a", "64k"][..] } else { &["-an"][..] })
            .args(["-f", "hls", "-hls_time", &profile.segment_secs.to_string(), "-hls_list_size", "0"]);
        match container {
            Container::Ts => cmd.args(["-hls_segment_type", "mpegts"]),
            Container::Fmp4 => cmd.args(["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]),
        };
        cmd.arg("-hls_segment_filename").arg(dir.join(format!("seg%05d.{ext}"))).arg(dir.join("index.tmp.m3u8"));
        run(&mut cmd);
        std::fs::rename(dir.join("index.tmp.m3u8"), &index).unwrap();
    }
    let text = std::fs::read_to_string(&index).unwrap();
    let mut segments = Vec::new();
    let mut duration = 0.0;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            duration = d.trim_end_matches(',').parse().unwrap();
        } else if !line.starts_with('#') && !line.is_empty() {
            segments.push((dir.join(line), duration));
        }
    }
    let init = (container == Container::Fmp4).then(|| dir.join("init.mp4"));
    Media { container, dir, segments, init }
}

/// Per-channel behaviour, changed on command.
#[derive(Debug)]
struct Channel {
    media: Arc<Media>,
    window: usize,
    /// (session, sequence, media index, publish time) of every published segment.
    published: Vec<(u32, u64, usize, SystemTime)>,
    /// A reconnect starts a new session: numbering from 0, new URIs.
    session: u32,
    next_seq: u64,
    next_index: usize,
    next_publish: Instant,
    offline: bool,
    ended: bool,
    stalled: bool,
    playlist_status: Option<u16>,
    failing_segments: HashSet<u64>,
    truncate_next_playlists: u32,
    segment_delay: Duration,
    /// Segments are published this many times faster than their duration.
    speed: f64,
    /// When each segment request arrived.
    segment_requests: Vec<Instant>,
    /// Sequences served as Twitch serves its stitched ads.
    ads: HashSet<u64>,
    /// With Some, the playlist answers 403 unless asked with `?token=` this
    /// value, as a platform's signed playlist URLs do once they expire.
    token: Option<u64>,
    /// Each segment carries a stamp of its channel and sequence number.
    stamped: bool,
    /// With Some, every request is logged here with the process that sent
    /// it; the server's port, for the kernel's socket tables.
    trace: Option<(u16, Vec<Request>)>,
}

/// One request the source answered, as the source saw it: the evidence the
/// chaos audit reconstructs executions from, independent of the cells' logs.
#[derive(Debug, Clone)]
pub struct Request {
    /// None for a playlist, else the segment's media sequence number.
    pub seq: Option<u64>,
    pub peer: SocketAddr,
    /// The process that owned the client end of the connection, found in
    /// the kernel's socket tables while the request was open.
    pub pid: Option<i32>,
    pub began: SystemTime,
    pub ended: SystemTime,
    pub status: u16,
}

/// The processes whose requests a trace attributes.
const CLIENTS: &[&str] = &["harvest-cell", "observer-cell", "mothership"];

/// The stamp a stamped channel appends to a segment: one MPEG-TS null
/// packet (PID 0x1FFF, which every demuxer skips) whose payload names the
/// channel, the session and the sequence number, so two segments made from
/// the same media file never hash alike.
pub fn stamp(name: &str, session: u32, seq: u64) -> [u8; 188] {
    let mut packet = [0xFFu8; 188];
    packet[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
    let text = format!("colony-stamp {name} {session} {seq}");
    let n = text.len().min(184);
    packet[4..4 + n].copy_from_slice(&text.as_bytes()[..n]);
    packet
}

impl Channel {
    fn advance(&mut self) {
        let now = Instant::now();
        if self.offline || self.stalled || self.ended {
            self.next_publish = self.next_publish.max(now);
            return;
        }
        // Publishing happens lazily, at the next request, but each segment is
        // stamped with the moment it was due: latency measured against these
        // times does not depend on who happened to ask first.
        while self.next_publish <= now {
            let dur = self.media.segments[self.next_index % self.media.segments.len()].1;
            let due = SystemTime::now() - now.duration_since(self.next_publish);
            self.publish_at(due);
            self.next_publish += Duration::from_secs_f64(dur / self.speed);
        }
    }

    fn publish(&mut self) {
        self.publish_at(SystemTime::now());
    }

    fn publish_at(&mut self, at: SystemTime) {
        self.published.push((self.session, self.next_seq, self.next_index % self.media.segments.len(), at));
        self.next_seq += 1;
        self.next_index += 1;
    }

    fn playlist(&mut self) -> Result<String, StatusCode> {
        self.advance();
        if let Some(code) = self.playlist_status {
            return Err(StatusCode::from_u16(code).unwrap());
        }
        if self.offline {
            return Err(StatusCode::NOT_FOUND);
        }
        let current: Vec<_> = self.published.iter().filter(|p| p.0 == self.session).copied().collect();
        let window = &current[current.len().saturating_sub(self.window)..];
        let target = self.media.segments.iter().map(|s| s.1).fold(0.0, f64::max).ceil() as u64;
        let ext = if self.media.init.is_some() { "m4s" } else { "ts" };
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            if self.media.init.is_some() { 7 } else { 3 },
            window.first().map_or(0, |w| w.1)
        );
        if self.media.init.is_some() {
            out.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
        }
        let mut prev: Option<u64> = None;
        for (session, seq, index, at) in window {
            let ad = *session == 0 && self.ads.contains(seq);
            let was_ad = prev.is_some_and(|p| *session == 0 && self.ads.contains(&p));
            if prev.is_some_and(|p| p + 1 != *seq) || (prev.is_some() && ad != was_ad) {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let dur = self.media.segments[*index].1;
            let pdt = chrono::DateTime::<chrono::Utc>::from(*at - Duration::from_secs_f64(dur));
            let pdt = pdt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            // Twitch's shape (as streamlink's Twitch plugin reads it): a date
            // range of class twitch-stitched-ad, and an "Amazon|…" title.
            let title = if ad {
                out.push_str(&format!(
                    "#EXT-X-DATERANGE:ID=\"stitched-ad-{seq}\",CLASS=\"twitch-stitched-ad\",START-DATE=\"{pdt}\",\
                     DURATION={dur:.3},X-TV-TWITCH-AD-ROLL-TYPE=\"MIDROLL\"\n"
                ));
                format!("Amazon|{seq}")
            } else {
                "live".to_owned()
            };
            out.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{dur:.3},{title}\nseg/{session}-{seq}.{ext}?token=t{seq}\n"
            ));
            prev = Some(*seq);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        if self.truncate_next_playlists > 0 {
            self.truncate_next_playlists -= 1;
            out.truncate(out.len() * 2 / 3);
        }
        Ok(out)
    }

    fn segment_path(&self, session: u32, seq: u64) -> Option<PathBuf> {
        if session == 0 && self.failing_segments.contains(&seq) {
            return None;
        }
        self.published.iter().rev().find(|p| p.0 == session && p.1 == seq).map(|p| self.media.segments[p.2].0.clone())
    }
}

type Channels = Arc<Mutex<HashMap<String, Channel>>>;

/// A running source server. Dropping it stops the server.
pub struct LiveSource {
    pub addr: SocketAddr,
    channels: Channels,
    _server: tokio::task::JoinHandle<()>,
}

impl LiveSource {
    pub async fn start() -> Self {
        let channels: Channels = Arc::default();
        let app = Router::new()
            .route("/{name}/master.m3u8", get(master))
            .route("/{name}/index.m3u8", get(playlist))
            .route("/{name}/token", get(token))
            .route("/{name}/init.mp4", get(init))
            .route("/{name}/seg/{file}", get(segment))
            .with_state(channels.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Self { addr, channels, _server: server }
    }

    /// Add a channel that goes live now with `window` segments already published.
    pub fn add(&self, name: &str, media: &Media, window: usize) {
        let mut ch = Channel {
            media: Arc::new(media.clone()),
            window,
            published: Vec::new(),
            session: 0,
            next_seq: 0,
            next_index: 0,
            next_publish: Instant::now(),
            offline: false,
            ended: false,
            stalled: false,
            playlist_status: None,
            failing_segments: HashSet::new(),
            truncate_next_playlists: 0,
            segment_delay: Duration::ZERO,
            speed: 1.0,
            segment_requests: Vec::new(),
            ads: HashSet::new(),
            token: None,
            stamped: false,
            trace: None,
        };
        // The window a live source already offers was captured one segment
        // after another: back-date each so that its program date-time ends
        // where the next one's begins, as a real source's do.
        let prefill = window.saturating_sub(1);
        let media = ch.media.clone();
        let duration = |i: usize| Duration::from_secs_f64(media.segments[i % media.segments.len()].1);
        let now = SystemTime::now();
        for i in 0..prefill {
            let later: Duration = (i + 1..=prefill).map(duration).sum();
            ch.publish_at(now - later);
        }
        self.channels.lock().unwrap().insert(name.to_owned(), ch);
    }

    pub fn media_url(&self, name: &str) -> String {
        format!("http://{}/{name}/index.m3u8", self.addr)
    }

    pub fn master_url(&self, name: &str) -> String {
        format!("http://{}/{name}/master.m3u8", self.addr)
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Channel) -> T) -> T {
        let mut map = self.channels.lock().unwrap();
        let ch = map.get_mut(name).expect("unknown channel");
        ch.advance();
        f(ch)
    }

    /// The playlist answers 404 until [`come_back`](Self::come_back).
    pub fn go_offline(&self, name: &str) {
        self.with(name, |c| c.offline = true);
    }

    /// Live again as a new stream (a reconnect): a new session whose media
    /// sequence starts at 0 under new URIs, as real encoders restart.
    pub fn come_back(&self, name: &str) {
        self.with(name, |c| {
            c.offline = false;
            c.stalled = false;
            c.session += 1;
            c.next_seq = 0;
            c.publish();
            c.next_publish = Instant::now() + Duration::from_secs_f64(c.media.segments[0].1);
        });
    }

    /// Live again after a blip: the same stream, numbering goes on.
    pub fn resume(&self, name: &str) {
        self.with(name, |c| {
            c.offline = false;
            c.stalled = false;
            c.next_publish = Instant::now();
        });
    }

    /// Sign the playlist URL: only `?token=N` (the current one, which
    /// `GET /{name}/token` tells a resolver) is served; any other gets 403.
    /// Calling it again rotates the token.
    pub fn rotate_token(&self, name: &str) {
        self.with(name, |c| c.token = Some(c.token.map_or(1, |t| t + 1)))
    }

    /// Serve these sequences as Twitch serves a stitched ad break.
    pub fn ads(&self, name: &str, seqs: impl IntoIterator<Item = u64>) {
        self.with(name, |c| c.ads.extend(seqs))
    }

    /// The broadcast is over: `EXT-X-ENDLIST`.
    pub fn end(&self, name: &str) {
        self.with(name, |c| c.ended = true);
    }

    /// The playlist answers this status (or normally again with `None`).
    pub fn playlist_status(&self, name: &str, status: Option<u16>) {
        self.with(name, |c| c.playlist_status = status);
    }

    /// Stop publishing new segments while still answering.
    pub fn stall(&self, name: &str) {
        self.with(name, |c| c.stalled = true);
    }

    /// The live window jumps `n` segments ahead at once, as when segments
    /// are lost between two reloads: the skipped ones are never offered.
    pub fn jump(&self, name: &str, n: u64) {
        self.with(name, |c| {
            for _ in 0..n {
                c.publish();
            }
        });
    }

    /// This segment answers 404.
    pub fn fail_segment(&self, name: &str, seq: u64) {
        self.with(name, |c| c.failing_segments.insert(seq));
    }

    /// This segment answers again.
    pub fn heal_segment(&self, name: &str, seq: u64) {
        self.with(name, |c| c.failing_segments.remove(&seq));
    }

    /// Fast-forward: publish `factor` segments per segment duration.
    pub fn speed(&self, name: &str, factor: f64) {
        assert!(factor > 0.0);
        self.with(name, |c| c.speed = factor);
    }

    /// Every segment response waits this long first (a slow CDN).
    pub fn segment_delay(&self, name: &str, delay: Duration) {
        self.with(name, |c| c.segment_delay = delay);
    }

    /// The next `n` playlist responses are cut short.
    pub fn truncate_playlists(&self, name: &str, n: u32) {
        self.with(name, |c| c.truncate_next_playlists = n);
    }

    /// Stamp every segment of this channel with its name and sequence
    /// number ([`stamp`]): what the source served can then be told apart
    /// byte for byte, even where the media files repeat.
    pub fn stamp(&self, name: &str) {
        self.with(name, |c| c.stamped = true);
    }

    /// Log every request to this channel, with the process that sent it.
    pub fn trace(&self, name: &str) {
        let port = self.addr.port();
        self.with(name, |c| c.trace = Some((port, Vec::new())));
    }

    /// The requests a traced channel answered, in the order they ended.
    pub fn requests(&self, name: &str) -> Vec<Request> {
        self.with(name, |c| c.trace.as_ref().map(|t| t.1.clone()).unwrap_or_default())
    }

    /// Every sequence number the first session published, with its publish time.
    pub fn published(&self, name: &str) -> Vec<(u64, SystemTime)> {
        self.published_in(name, 0)
    }

    /// Every sequence number a session published, with its publish time.
    pub fn published_in(&self, name: &str, session: u32) -> Vec<(u64, SystemTime)> {
        self.with(name, |c| c.published.iter().filter(|p| p.0 == session).map(|p| (p.1, p.3)).collect())
    }

    /// When each segment request to this channel arrived.
    pub fn segment_requests(&self, name: &str) -> Vec<Instant> {
        self.with(name, |c| c.segment_requests.clone())
    }

    /// The bytes of a segment the first session published, as it was
    /// served (with its stamp on a stamped channel).
    pub fn segment_bytes(&self, name: &str, seq: u64) -> Option<Vec<u8>> {
        let (path, stamped) = self.with(name, |c| {
            let path = c.segment_path(0, seq).or_else(|| {
                c.published.iter().find(|p| p.0 == 0 && p.1 == seq).map(|p| c.media.segments[p.2].0.clone())
            });
            (path, c.stamped)
        });
        let mut bytes = std::fs::read(path?).ok()?;
        if stamped {
            bytes.extend_from_slice(&stamp(name, 0, seq));
        }
        Some(bytes)
    }
}

async fn master(State(channels): State<Channels>, UrlPath(name): UrlPath<String>) -> Response {
    if !channels.lock().unwrap().contains_key(&name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=96x54\nindex.m3u8?variant=low\n\
                #EXT-X-STREAM-INF:BANDWIDTH=6500000,RESOLUTION=1920x1080\nindex.m3u8\n";
    ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], body).into_response()
}

async fn playlist(
    State(channels): State<Channels>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(name): UrlPath<String>,
    query: axum::extract::RawQuery,
) -> Response {
    let began = SystemTime::now();
    let traced = channels.lock().unwrap().get(&name).and_then(|c| c.trace.as_ref().map(|t| t.0));
    let pid = owner(traced, peer).await;
    let response = playlist_response(&channels, &name, query);
    log_request(
        &channels,
        &name,
        Request { seq: None, peer, pid, began, ended: SystemTime::now(), status: 0 },
        &response,
    );
    response
}

/// Who sent a request on a traced channel (`port` is the server's).
async fn owner(port: Option<u16>, peer: SocketAddr) -> Option<i32> {
    let port = port?;
    tokio::task::spawn_blocking(move || crate::kernel::owner_of_connection(peer.port(), port, CLIENTS)).await.ok()?
}

fn log_request(channels: &Channels, name: &str, mut request: Request, response: &Response) {
    request.status = response.status().as_u16();
    if let Some((_, log)) = channels.lock().unwrap().get_mut(name).and_then(|c| c.trace.as_mut()) {
        log.push(request);
    }
}

fn playlist_response(
    channels: &Channels,
    name: &str,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let given: Option<u64> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .and_then(|(_, v)| v.parse().ok());
    let result = match channels.lock().unwrap().get_mut(name) {
        None => Err(StatusCode::NOT_FOUND),
        Some(ch) if ch.token.is_some() && ch.token != given => Err(StatusCode::FORBIDDEN),
        Some(ch) => ch.playlist(),
    };
    match result {
        Ok(body) => {
            ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl"), (header::CACHE_CONTROL, "no-cache")], body)
                .into_response()
        }
        Err(code) => code.into_response(),
    }
}

/// The current playlist token of a channel (for `live-source resolve`).
async fn token(State(channels): State<Channels>, UrlPath(name): UrlPath<String>) -> Response {
    match channels.lock().unwrap().get(&name) {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(ch) => ch.token.map(|t| t.to_string()).unwrap_or_default().into_response(),
    }
}

async fn init(State(channels): State<Channels>, UrlPath(name): UrlPath<String>) -> Response {
    let path = channels.lock().unwrap().get(&name).and_then(|c| c.media.init.clone());
    file_response(path, None).await
}

async fn segment(
    State(channels): State<Channels>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((name, file)): UrlPath<(String, String)>,
) -> Response {
    let began = SystemTime::now();
    let id: Option<(u32, u64)> = file
        .split('.')
        .next()
        .and_then(|s| s.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let (path, delay, stamped, traced) = {
        let mut map = channels.lock().unwrap();
        if let Some(ch) = map.get_mut(&name) {
            ch.segment_requests.push(Instant::now());
        }
        let ch = map.get(&name);
        (
            id.and_then(|(session, seq)| ch.and_then(|c| c.segment_path(session, seq))),
            ch.map_or(Duration::ZERO, |c| c.segment_delay),
            ch.is_some_and(|c| c.stamped),
            ch.and_then(|c| c.trace.as_ref().map(|t| t.0)),
        )
    };
    let pid = owner(traced, peer).await;
    tokio::time::sleep(delay).await;
    let stamp = id.filter(|_| stamped).map(|(session, seq)| stamp(&name, session, seq));
    let response = file_response(path, stamp).await;
    let seq = id.map(|i| i.1);
    log_request(&channels, &name, Request { seq, peer, pid, began, ended: SystemTime::now(), status: 0 }, &response);
    response
}

async fn file_response(path: Option<PathBuf>, stamp: Option<[u8; 188]>) -> Response {
    match path {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(p) => match tokio::fs::read(&p).await {
            Ok(mut body) => {
                body.extend_from_slice(stamp.as_ref().map_or(&[][..], |s| &s[..]));
                ([(header::CONTENT_TYPE, "video/mp2t")], Bytes::from(body)).into_response()
            }
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// For benchmarks run by hand: where the media dir is.
pub fn media_dir(media: &Media) -> &Path {
    &media.dir
}
