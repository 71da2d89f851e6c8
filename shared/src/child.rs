//! The environment of the programs a cell runs (streamlink, yt-dlp, ffmpeg,
//! ffprobe). A cell's own environment holds its database URL and the S3
//! keys; a resolver or an ffmpeg fed by a hostile source needs neither. So a
//! child starts with an empty environment plus where programs are, its home
//! and language, and the proxy settings the operator gave the cell, and
//! Python's per-user site directory off (a `.pth` file there runs code).
//! What it prints is read under a cap.

/// What a child program keeps of the cell's environment.
pub const KEPT: &[&str] =
    &["PATH", "HOME", "LANG", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"];

/// Clear `command`'s environment down to [`KEPT`].
pub fn scrub(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    command.env_clear();
    for key in KEPT {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.env("PYTHONNOUSERSITE", "1")
}

/// Read a child's pipe to its end, keeping at most `cap` bytes: what a
/// program prints is read whole (so it never blocks on a full pipe) but
/// never held beyond the cap.
pub async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, cap: u64) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(cap).read_to_end(&mut buf).await;
    }
    buf
}
