//! Webhook deliveries, signed and sent by the mothership itself.
//!
//! Signing needs the hook's secret. Harvest cells run on volunteers' laptops
//! and VPSes, so they never hold one: their database role cannot read the
//! `webhooks` table at all, and they never claim a `webhook` job. The tick
//! queues a job per (hook, event) (`crate::webhook`) and then delivers what
//! is due, within a time budget, through the same queue: leases, retries
//! with backoff, dead letters.
//!
//! A receiver is an untrusted address, so every delivery:
//! - goes only to a public address, unless the hook was added with
//!   `--allow-private`: the URL's literal address is checked, and every DNS
//!   answer is checked before a connection (a public name that later points
//!   at 127.0.0.1 or the metadata service is refused at that delivery);
//!   metadata and link-local addresses are refused even then;
//! - follows no redirect, is bounded by [`TIMEOUT`], and reads at most
//!   [`BODY_CAP`] bytes of an answer;
//! - keeps in the job's error only the status code and a short, cleaned
//!   snippet of the answer: a receiver cannot fill the database or plant
//!   markup in the dashboard.
//!
//! Errors name the hook and its host, never its path or query: a Discord
//! URL carries its token in the path.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::webhook::hooks::{Format, Target};
use colony::exit::{Classify, ErrorClass};
use colony::hls::policy::{GuardedResolver, forbidden_ip, is_public};
use colony::queue::{FailOutcome, Failure, Job, JobArgs, KindFilter, Queue, QueueError, WebhookArgs};
use futures::StreamExt;
use serde_json::Value;
use tracing::{info, warn};

/// One attempt, connection to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a receiver's answer is read (for the error message).
pub const BODY_CAP: usize = 4096;
/// How much of that answer goes into the job's error, once cleaned.
const SHOWN: usize = 80;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// How long a claimed delivery is the mothership's.
const LEASE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("webhook {hook} ({host}) answered {status}{}", shown_body(.body))]
    Status { hook: i64, host: String, status: u16, body: String },
    #[error("webhook {hook} ({host}) could not be reached")]
    Send {
        hook: i64,
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "webhook {hook} ({host}) is a loopback, private or link-local address; remove it and add it again with \
         --allow-private if that is meant"
    )]
    Private { hook: i64, host: String },
}

/// A refused address stays refused: no retry can help. A receiver that
/// answered badly or not at all may do better on the next attempt.
impl Classify for DeliveryError {
    fn class(&self) -> ErrorClass {
        match self {
            DeliveryError::Private { .. } => ErrorClass::Permanent,
            DeliveryError::Status { .. } | DeliveryError::Send { .. } => ErrorClass::Transient,
        }
    }
}

fn shown_body(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// A receiver's answer as the job's error keeps it: printable characters
/// only, whitespace collapsed, URLs masked, at most [`SHOWN`] characters.
pub fn clean_snippet(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let printable: String =
        text.chars().map(|c| if c.is_control() || c.is_whitespace() { ' ' } else { c }).collect::<String>();
    let collapsed = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    let masked = colony::config::redact_text(&collapsed);
    let mut shown: String = masked.chars().take(SHOWN).collect();
    if masked.chars().count() > SHOWN {
        shown.push('…');
    }
    shown
}

/// The two clients: one that resolves names to public addresses only, one
/// for hooks added with `--allow-private` (metadata still refused).
fn client(allow_private: bool) -> &'static reqwest::Client {
    static PUBLIC: OnceLock<reqwest::Client> = OnceLock::new();
    static PRIVATE: OnceLock<reqwest::Client> = OnceLock::new();
    let build = |guard: GuardedResolver| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(guard))
            .user_agent(concat!("colony-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with static settings builds")
    };
    if allow_private {
        PRIVATE.get_or_init(|| build(GuardedResolver::allowing_any_private()))
    } else {
        PUBLIC.get_or_init(|| build(GuardedResolver::default()))
    }
}

/// May a hook's URL be sent to, as far as its literal address tells?
pub fn literal_allowed(url: &url::Url, allow_private: bool) -> bool {
    let ip: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    match ip {
        None => true,
        Some(ip) if forbidden_ip(ip) => false,
        Some(ip) => allow_private || is_public(ip),
    }
}

/// The bytes to POST, by the hook's format.
pub fn body(format: Format, payload: &Value) -> Vec<u8> {
    let value = match format {
        Format::Json => payload.clone(),
        // No mention in a title or an error may ping anyone.
        Format::Discord => serde_json::json!({ "content": discord_line(payload), "allowed_mentions": { "parse": [] } }),
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// Text from a platform or a source, made inert in Discord's markdown: its
/// markup characters escaped and every `@` kept from starting a mention.
pub fn discord_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '<' => {
                out.push('\\');
                out.push(c);
            }
            // A zero-width space after `@` keeps `@everyone` from being one.
            '@' => out.push_str("@\u{200b}"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One line a person reads in a chat: what happened, to what.
pub fn discord_line(payload: &Value) -> String {
    let kind = payload["type"].as_str().unwrap_or("event");
    let d = &payload["data"];
    let text = |k: &str| d[k].as_str().map(discord_escape);
    let channel = text("channel").unwrap_or_else(|| "?".into());
    let title = text("title").map(|t| format!(": {t}")).unwrap_or_default();
    let line = match kind {
        "channel.live" => format!("🔴 {channel} is live{title}"),
        "channel.offline" => format!("⚫ {channel} went offline"),
        "recording.started" => format!("⏺️ recording {} of {channel} started{title}", d["recording_id"]),
        "recording.completed" => format!(
            "✅ recording {} of {channel} completed: {} segments, {} gaps{title}",
            d["recording_id"], d["segments"], d["gaps"]
        ),
        "recording.interrupted" => format!("⚠️ recording {} of {channel} was interrupted{title}", d["recording_id"]),
        "recording.failed" => format!(
            "❌ recording {} of {channel} failed: {}",
            d["recording_id"],
            text("error").unwrap_or_else(|| "no reason given".into())
        ),
        "job.dead" => format!(
            "💀 {} job {} is dead after {} attempts: {}",
            text("kind").unwrap_or_else(|| "a".into()),
            d["job_id"],
            d["attempt"],
            text("last_error").unwrap_or_else(|| "no error kept".into())
        ),
        "cell.dead" => format!(
            "💀 {} cell {} is dead: {}",
            text("kind").unwrap_or_default(),
            text("cell_id").unwrap_or_default(),
            text("why").unwrap_or_else(|| "no reason given".into())
        ),
        other => format!("Colony: {}", discord_escape(other)),
    };
    // Discord takes at most 2000 characters.
    line.chars().take(1900).collect()
}

/// Sign and POST one event to its hook.
pub async fn deliver(target: &Target, hook: i64, args: &WebhookArgs) -> Result<(), DeliveryError> {
    let host = target.url.host_str().unwrap_or_default().to_owned();
    if !literal_allowed(&target.url, target.allow_private) {
        return Err(DeliveryError::Private { hook, host });
    }
    let body = body(target.format, &args.payload);
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signature = target.secret.sign(&args.event_id, timestamp, &body);
    let sent = client(target.allow_private)
        .post(target.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &args.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) if colony::hls::refusal_in(&e).is_some() => return Err(DeliveryError::Private { hook, host }),
        Err(e) => return Err(DeliveryError::Send { hook, host, source: e.without_url() }),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // Read a bounded prefix of the answer, for the error only.
    let mut answer = Vec::new();
    while answer.len() < BODY_CAP {
        match tokio::time::timeout(TIMEOUT, response.chunk()).await {
            Ok(Ok(Some(chunk))) => answer.extend_from_slice(&chunk[..chunk.len().min(BODY_CAP - answer.len())]),
            _ => break,
        }
    }
    Err(DeliveryError::Status { hook, host, status: status.as_u16(), body: clean_snippet(&answer) })
}

/// What one pass of deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    pub sent: u32,
    pub failed: u32,
}

/// Deliver what is due until the queue has none or `budget` is spent.
pub async fn deliver_due(queue: &Queue, worker: &str, budget: Duration) -> Result<Delivered, QueueError> {
    let started = Instant::now();
    let kinds = KindFilter::Only(vec!["webhook".into()]);
    let mut done = Delivered::default();
    while started.elapsed() < budget {
        let jobs = queue.claim(worker, &kinds, CONCURRENCY as i64, LEASE).await?;
        if jobs.is_empty() {
            break;
        }
        let outcomes: Vec<Result<bool, QueueError>> =
            futures::stream::iter(jobs.iter()).map(|job| one(queue, job)).buffer_unordered(CONCURRENCY).collect().await;
        for outcome in outcomes {
            match outcome? {
                true => done.sent += 1,
                false => done.failed += 1,
            }
        }
    }
    Ok(done)
}

/// Deliver one claimed job and record how it went; true if it was sent.
async fn one(queue: &Queue, job: &Job) -> Result<bool, QueueError> {
    let lease = job.lease();
    let args = match JobArgs::of(job) {
        Ok(JobArgs::Webhook(args)) => args,
        Ok(_) | Err(_) => {
            queue.fail(lease, "not a webhook delivery's arguments", Failure::Permanent).await?;
            return Ok(false);
        }
    };
    let target = match crate::webhook::hooks::target(queue.pool(), args.hook_id).await {
        Ok(Some(target)) if target.enabled => target,
        Ok(_) => {
            info!(hook = args.hook_id, event = %args.event_id, "the webhook was removed or disabled; nothing sent");
            queue.complete(lease).await?;
            return Ok(true);
        }
        Err(e) => {
            queue.fail(lease, &colony::error_chain(&e), Failure::Permanent).await?;
            return Ok(false);
        }
    };
    match deliver(&target, args.hook_id, &args).await {
        Ok(()) => {
            info!(hook = args.hook_id, event = %args.event_id, host = target.url.host_str().unwrap_or_default(), "webhook delivered");
            queue.complete(lease).await?;
            Ok(true)
        }
        Err(e) => {
            let outcome = queue.fail(lease, &colony::error_chain(&e), Failure::of(&e)).await?;
            let retry = matches!(outcome, FailOutcome::RetryAt(_));
            warn!(hook = args.hook_id, error = %colony::error_chain(&e), retry, "webhook delivery failed");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discord_gets_one_readable_line_and_json_the_event() {
        let payload = json!({ "type": "recording.completed", "timestamp": "2024-01-01T00:00:00Z",
            "data": { "recording_id": 42, "channel": "alpha", "title": "Speedrun", "segments": 120, "gaps": 0 } });
        let discord: Value = serde_json::from_slice(&body(Format::Discord, &payload)).unwrap();
        let line = discord["content"].as_str().unwrap();
        assert!(line.contains("recording 42 of alpha completed") && line.contains("Speedrun"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(discord["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(serde_json::from_slice::<Value>(&body(Format::Json, &payload)).unwrap(), payload);
        let dead = json!({ "type": "job.dead", "data": { "kind": "export", "job_id": 7, "attempt": 5, "last_error": "boom" } });
        assert_eq!(discord_line(&dead), "💀 export job 7 is dead after 5 attempts: boom");
        assert_eq!(discord_line(&json!({})), "Colony: event");
    }

    /// Defect: a stream title with `@everyone` pinged a whole Discord server,
    /// and markdown in it was rendered.
    #[test]
    fn a_title_can_neither_mention_nor_format() {
        let payload = json!({ "type": "channel.live", "data": { "channel": "a_b",
            "title": "@everyone **free** [link](https://x) <@&123>\nline" } });
        let line = discord_line(&payload);
        assert!(!line.contains("@everyone") && line.contains("@\u{200b}everyone"), "{line}");
        assert!(line.contains("\\*\\*free\\*\\*") && line.contains("\\[link\\]"), "{line}");
        assert!(!line.contains("<@&") && !line.contains('\n'), "{line}");
        assert!(line.contains("a\\_b"), "{line}");
    }

    /// Defect: a receiver's whole answer went into the job's last error.
    #[test]
    fn a_refusal_keeps_the_status_and_a_short_clean_snippet() {
        let e =
            DeliveryError::Status { hook: 3, host: "h.example".into(), status: 500, body: clean_snippet(b"oops\n") };
        assert_eq!(e.to_string(), "webhook 3 (h.example) answered 500: oops");
        let noisy = format!("<html>\x1b[31m{}\n\t see https://internal/x?token=abc</html>", "A".repeat(500));
        let shown = clean_snippet(noisy.as_bytes());
        assert!(shown.chars().count() <= SHOWN + 1 && !shown.contains('\x1b'), "{shown}");
        assert!(!clean_snippet(b"see https://internal/x?token=abc").contains("abc"));
        let e = DeliveryError::Status { hook: 3, host: "h".into(), status: 502, body: clean_snippet(b"") };
        assert_eq!(e.to_string(), "webhook 3 (h) answered 502");
    }

    #[test]
    fn literal_addresses_need_an_allowance_and_metadata_never_passes() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(literal_allowed(&u("https://hooks.example/x"), false));
        assert!(literal_allowed(&u("https://93.184.216.34/x"), false));
        for private in ["http://127.0.0.1:9/x", "http://10.0.0.2/x", "http://[::1]/x", "http://192.168.1.1/"] {
            assert!(!literal_allowed(&u(private), false), "{private}");
            assert!(literal_allowed(&u(private), true), "{private}");
        }
        assert!(!literal_allowed(&u("http://169.254.169.254/latest"), true));
    }
}
