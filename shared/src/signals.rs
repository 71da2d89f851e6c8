//! The one way every Colony process learns it should stop: SIGTERM (what
//! cron, systemd, Docker and ECS send) or Ctrl-C.

use tokio_util::sync::CancellationToken;

/// Resolves at the first SIGTERM or Ctrl-C. The handler is installed when
/// this is called, so a signal that arrives before the future is awaited is
/// not missed.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

/// A token cancelled at the first SIGTERM or Ctrl-C.
pub fn stop_token() -> std::io::Result<CancellationToken> {
    let stop = CancellationToken::new();
    let signal = stop_signal()?;
    let token = stop.clone();
    tokio::spawn(async move {
        signal.await;
        token.cancel();
    });
    Ok(stop)
}
