//! Helpers for Colony's integration tests and benchmarks: the real services,
//! started once per machine and shared by every test process.
//!
//! - [`pg`]: a private PostgreSQL cluster (initdb + pg_ctl on a free loopback
//!   port), or the server in `DATABASE_URL`; each test gets its own database.
//! - [`garage`]: a single-node Garage with a key and a bucket, made through its CLI.
//! - [`bins`]: the workspace's built binaries.
//!
//! Services are started under a file lock so that parallel test processes
//! share one instance, and are left running for the next run.

pub mod bins;
pub mod browser;
pub mod chaos;
pub mod chat;
pub mod compose;
pub mod docker;
pub mod fuzz;
pub mod garage;
pub mod hostile;
pub mod kernel;
pub mod kick;
pub mod live;
pub mod mothership;
pub mod moto;
pub mod netns;
pub mod observer;
pub mod pg;
mod proc;
pub mod twitch;
pub mod web;
pub mod webhook_receiver;
pub mod youtube;

use std::time::{Duration, Instant};

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server task that stops when this is dropped.
pub struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve `app` on a free loopback port until the returned [`Server`] is
/// dropped: the platform fakes' server.
pub async fn serve_loopback(app: axum::Router) -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, Server(server))
}
