//! A hostile HLS source for tests: each path serves one way a source can be
//! buggy, malicious or endless. Segments that are served at all are real
//! (the test media, one second each), published one per second from the
//! moment the server starts, so the observer has something to record.
//!
//! | path | what it sends |
//! |---|---|
//! | `/overflow/index.m3u8` | program date-times, and every fifth `EXTINF` is 10^30 seconds |
//! | `/huge-target/index.m3u8` | `EXT-X-TARGETDURATION:100000` |
//! | `/huge-target-max/index.m3u8` | `EXT-X-TARGETDURATION:6200000000000000000` |
//! | `/jump/index.m3u8` | numbering jumps to 850,000,000 after a few seconds |
//! | `/beyond/index.m3u8` | numbering jumps past 2^63 after a few seconds |
//! | `/endless-segment/index.m3u8` | segments that never end (zeros, as fast as loopback goes) |
//! | `/endless-playlist/index.m3u8` | a playlist that never ends |
//! | `/garbage/index.m3u8` | `#EXTM3U` and then binary garbage |
//! | `/frozen/index.m3u8` | the same four segments forever |
//! | `/foreign/index.m3u8` | segments on the metadata address, on another host, and redirected there |
//!
//! The other host is a second server on 127.0.0.2 that counts every request
//! it gets: a fetch policy that works leaves it at zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;

use crate::live::Media;

/// Sequence numbers at or above 2^63.
pub const BEYOND: u64 = 1 << 63;
/// Epoch-time numbering, as a restarted packager might use.
pub const JUMP_TO: u64 = 850_000_000;
/// Seconds after start at which `jump` and `beyond` change their numbering.
pub const CHANGE_AFTER_SECS: u64 = 6;

/// Every path the server offers, for tests that want them all.
pub const KINDS: &[&str] = &[
    "overflow",
    "huge-target",
    "huge-target-max",
    "jump",
    "beyond",
    "endless-segment",
    "endless-playlist",
    "garbage",
    "frozen",
    "foreign",
];

struct Shared {
    started: Instant,
    segments: Vec<Bytes>,
    foreign: SocketAddr,
    foreign_hits: Arc<AtomicU64>,
}

/// A running hostile source and its foreign twin. Dropping it stops both.
pub struct HostileSource {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _servers: [tokio::task::JoinHandle<()>; 2],
}

impl HostileSource {
    pub async fn start(media: &Media) -> Self {
        let segments = media.segments.iter().map(|(p, _)| Bytes::from(std::fs::read(p).unwrap())).collect();
        let foreign_hits = Arc::new(AtomicU64::new(0));
        let hits = foreign_hits.clone();
        let foreign_app = Router::new().fallback(move || {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, "foreign content")
            }
        });
        let foreign_listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
        let foreign = foreign_listener.local_addr().unwrap();
        let foreign_server = tokio::spawn(async move {
            let _ = axum::serve(foreign_listener, foreign_app).await;
        });
        let shared = Arc::new(Shared { started: Instant::now(), segments, foreign, foreign_hits });
        let app = Router::new()
            .route("/{kind}/index.m3u8", get(playlist))
            .route("/{kind}/seg/{file}", get(segment))
            .route("/{kind}/redirect/{file}", get(redirect))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, _servers: [server, foreign_server] }
    }

    pub fn url(&self, kind: &str) -> String {
        format!("http://{}/{kind}/index.m3u8", self.addr)
    }

    /// Requests the other host has received.
    pub fn foreign_hits(&self) -> u64 {
        self.shared.foreign_hits.load(Ordering::SeqCst)
    }

    /// Seconds since the server started: the newest published segment.
    pub fn now(&self) -> u64 {
        self.shared.started.elapsed().as_secs()
    }
}

/// The last four sequence numbers published `n` seconds in, numbered from `base`.
fn window(base: u64, n: u64) -> impl Iterator<Item = u64> {
    let first = n.saturating_sub(3);
    (first..=n).map(move |i| base.wrapping_add(i))
}

fn playlist_text(shared: &Shared, kind: &str) -> Option<String> {
    let n = shared.started.elapsed().as_secs();
    let changed = n >= CHANGE_AFTER_SECS;
    let (target, base, frozen) = match kind {
        "overflow" | "endless-segment" | "foreign" => ("1".to_owned(), 0, false),
        "huge-target" => ("100000".to_owned(), 0, false),
        "huge-target-max" => ("6200000000000000000".to_owned(), 0, false),
        "jump" => ("1".to_owned(), if changed { JUMP_TO } else { 0 }, false),
        "beyond" => ("1".to_owned(), if changed { BEYOND } else { 0 }, false),
        "frozen" => ("1".to_owned(), 0, true),
        _ => return None,
    };
    let seqs: Vec<u64> = if frozen { (0..4).collect() } else { window(base, n).collect() };
    let mut out =
        format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n", seqs[0]);
    for seq in seqs {
        let pdt = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
            + chrono::Duration::seconds(1_800_000_000 + (seq % 1_000_000_000) as i64);
        out.push_str(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n",
            pdt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        let extinf = if kind == "overflow" && seq % 5 == 0 { "1000000000000000000000000000000" } else { "1.000" };
        out.push_str(&format!("#EXTINF:{extinf},\n"));
        let uri = match (kind, seq % 4) {
            ("foreign", 1) => "http://169.254.169.254/latest/meta-data/iam/x.ts".to_owned(),
            ("foreign", 2) => format!("http://{}/seg/{seq}.ts", shared.foreign),
            ("foreign", 3) => format!("redirect/{seq}.ts"),
            _ => format!("seg/{seq}.ts"),
        };
        out.push_str(&uri);
        out.push('\n');
    }
    Some(out)
}

async fn playlist(State(shared): State<Arc<Shared>>, UrlPath(kind): UrlPath<String>) -> Response {
    match kind.as_str() {
        "garbage" => {
            let mut body = b"#EXTM3U\n".to_vec();
            let mut x: u32 = 0x9e37_79b9;
            for _ in 0..4096 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                body.push(x as u8);
            }
            (StatusCode::OK, body).into_response()
        }
        "endless-playlist" => {
            let head = Bytes::from_static(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n");
            let line = Bytes::from(format!("#EXT-X-COLONY-TEST:{}\n", "a".repeat(1000)));
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(head) })
                .chain(futures::stream::repeat_with(move || Ok(line.clone())));
            ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], Body::from_stream(stream)).into_response()
        }
        _ => match playlist_text(&shared, &kind) {
            Some(text) => ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], text).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

async fn segment(State(shared): State<Arc<Shared>>, UrlPath((kind, file)): UrlPath<(String, String)>) -> Response {
    if kind == "endless-segment" {
        let chunk = Bytes::from(vec![0u8; 64 * 1024]);
        let stream = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        return ([(header::CONTENT_TYPE, "video/mp2t")], Body::from_stream(stream)).into_response();
    }
    let Some(seq) = file.split('.').next().and_then(|s| s.parse::<u64>().ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = shared.segments[(seq % shared.segments.len() as u64) as usize].clone();
    ([(header::CONTENT_TYPE, "video/mp2t")], body).into_response()
}

async fn redirect(State(shared): State<Arc<Shared>>, UrlPath((_kind, file)): UrlPath<(String, String)>) -> Response {
    let to = format!("http://{}/seg/{file}", shared.foreign);
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// Peak resident memory of a process, in MiB, from `/proc/<pid>/status`.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// How long until the server has published past `seconds`.
pub fn until(source: &HostileSource, seconds: u64) -> Duration {
    Duration::from_secs(seconds.saturating_sub(source.now()))
}
