//! A TCP proxy on loopback in front of a server (Postgres, Garage) that can
//! cut the line the way a partition does: when cut, it keeps every
//! connection open and accepts new ones, but what either side sends goes
//! nowhere, so clients wait on answers that never come (a half-open
//! connection, not a clean refusal). When healed, new connections work
//! again; connections that lost bytes during the cut are broken, as they
//! would be after a real partition, and clients have to notice and reconnect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Blackhole {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    /// A proxy to `target`, forwarding.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, flag.clone()));
                    tokio::spawn(pump(server_read, client_write, flag));
                });
            }
        });
        Self { addr, cut, _accept: accept }
    }

    /// A proxy in front of the server a URL names; returns it and the URL through it.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let mut parsed = url::Url::parse(url).unwrap();
        let host = parsed.host_str().unwrap().to_owned();
        let port = parsed.port_or_known_default().unwrap();
        let target = tokio::net::lookup_host((host.as_str(), port)).await.unwrap().next().unwrap();
        let proxy = Self::start(target).await;
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(proxy.addr.port())).unwrap();
        (proxy, parsed.to_string())
    }

    /// Drop everything from now on, without closing anything.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    // Once bytes were dropped, this connection is broken for good.
    let mut lost = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            lost = true;
            continue;
        }
        if lost || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
