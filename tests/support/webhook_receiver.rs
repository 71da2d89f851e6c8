//! A webhook receiver for tests, on loopback: it checks every delivery's
//! Standard Webhooks signature on its own (with the hmac crate, not
//! Colony's code), answers 500 to the first N deliveries and 200 after,
//! and keeps what it got.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Server, serve_loopback};

/// One delivery, as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    pub body: serde_json::Value,
    /// The signature matched the secret and the timestamp was within five minutes.
    pub verified: bool,
    pub content_type: Option<String>,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    key: Option<Vec<u8>>,
    fail_first: usize,
    deliveries: Vec<Delivery>,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _server: Server,
}

impl Receiver {
    /// A receiver that answers 500 to its first `fail_first` deliveries.
    pub async fn start(fail_first: usize) -> Self {
        let inner = Arc::new(Mutex::new(Inner { fail_first, ..Inner::default() }));
        let app = Router::new().route("/hook", post(receive)).with_state(inner.clone());
        let (addr, server) = serve_loopback(app).await;
        Self { url: format!("http://{addr}/hook"), inner, _server: server }
    }

    /// The secret `webhook add` printed (`whsec_…`).
    pub fn set_secret(&self, secret: &str) {
        let encoded = secret.strip_prefix("whsec_").expect("a whsec_ secret");
        self.inner.lock().unwrap().key = Some(STANDARD.decode(encoded).expect("base64 secret"));
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }
}

async fn receive(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let id = header("webhook-id").unwrap_or_default();
    let timestamp: i64 = header("webhook-timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    let signatures = header("webhook-signature").unwrap_or_default();
    let mut inner = inner.lock().unwrap();
    let verified = inner.key.as_deref().is_some_and(|key| verify(key, &id, timestamp, &body, &signatures));
    let status = if inner.deliveries.len() < inner.fail_first { 500 } else { 200 };
    inner.deliveries.push(Delivery {
        id,
        timestamp,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        verified,
        content_type: header("content-type"),
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// The check a receiver makes: some `v1,` signature in the header is
/// HMAC-SHA256 of "{id}.{timestamp}.{body}", and the timestamp is recent.
fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], signatures: &str) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - timestamp).abs() > 300 {
        return false;
    }
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        let Ok(sig) = STANDARD.decode(sig) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}
