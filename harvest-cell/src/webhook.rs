//! `webhook`: deliver one event to one webhook, signed the Standard
//! Webhooks way.
//!
//! The hook's URL and secret are read from its row at delivery, so they
//! never sit in the job's arguments (which `job list --json` prints). A 2xx
//! answer is success; any other answer, a timeout or a refused connection is
//! a passing failure, and the queue retries with backoff until the job's
//! attempts run out. No redirect is followed (a receiver that moved must be
//! registered again, not followed blindly), every attempt is bounded by
//! [`TIMEOUT`], and at most [`BODY_CAP`] bytes of an answer are read.
//! Errors name the hook and its host, never its path or query: a Discord URL
//! carries its token in the path.

use std::sync::OnceLock;
use std::time::Duration;

use colony::queue::WebhookArgs;
use colony::webhook::{Format, Target};
use serde_json::Value;
use tracing::{info, warn};

use crate::{Ctx, JobError};

/// One attempt, connection to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a receiver's answer is read (for the error message).
pub const BODY_CAP: usize = 4096;
/// How much of that answer goes into the job's error.
const SHOWN: usize = 200;

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("webhook {hook} ({host}) answered {status}{}", shown_body(.body))]
    Status { hook: i64, host: String, status: u16, body: String },
    #[error("webhook {hook} ({host}) could not be reached")]
    Send {
        hook: i64,
        host: String,
        #[source]
        source: reqwest::Error,
    },
}

fn shown_body(body: &str) -> String {
    if body.trim().is_empty() { String::new() } else { format!(": {}", body.trim().escape_debug()) }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("colony-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with static settings builds")
    })
}

pub async fn run(ctx: &Ctx, args: &WebhookArgs) -> Result<(), JobError> {
    let target = colony::webhook::target(ctx.queue.pool(), args.hook_id).await.map_err(JobError::classified)?;
    let Some(target) = target else {
        info!(hook = args.hook_id, event = %args.event_id, "the webhook was removed; nothing sent");
        return Ok(());
    };
    if !target.enabled {
        info!(hook = args.hook_id, event = %args.event_id, "the webhook is disabled; nothing sent");
        return Ok(());
    }
    let body = body(target.format, &args.payload);
    deliver(&target, args, &body).await?;
    info!(hook = args.hook_id, event = %args.event_id, host = target.url.host_str().unwrap_or_default(), "webhook delivered");
    Ok(())
}

/// The bytes to POST, by the hook's format.
pub fn body(format: Format, payload: &Value) -> Vec<u8> {
    let value = match format {
        Format::Json => payload.clone(),
        Format::Discord => serde_json::json!({ "content": discord_line(payload) }),
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// One line a person reads in a chat: what happened, to what.
pub fn discord_line(payload: &Value) -> String {
    let kind = payload["type"].as_str().unwrap_or("event");
    let d = &payload["data"];
    let text = |k: &str| d[k].as_str().map(str::to_owned);
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
        other => format!("Colony: {other}"),
    };
    // Discord takes at most 2000 characters.
    line.chars().take(1900).collect()
}

async fn deliver(target: &Target, args: &WebhookArgs, body: &[u8]) -> Result<(), JobError> {
    let (hook, host) = (args.hook_id, target.url.host_str().unwrap_or_default().to_owned());
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signature = target.secret.sign(&args.event_id, timestamp, body);
    let send = |source: reqwest::Error| {
        JobError::transient(DeliveryError::Send { hook, host: host.clone(), source: source.without_url() })
    };
    let mut response = client()
        .post(target.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &args.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .map_err(send)?;
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
    let body: String = String::from_utf8_lossy(&answer).chars().take(SHOWN).collect();
    warn!(hook, host = %host, status = status.as_u16(), "webhook receiver refused the delivery; the queue retries it");
    Err(JobError::transient(DeliveryError::Status { hook, host, status: status.as_u16(), body }))
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
        assert_eq!(discord.as_object().unwrap().len(), 1);
        assert_eq!(serde_json::from_slice::<Value>(&body(Format::Json, &payload)).unwrap(), payload);
        let dead = json!({ "type": "job.dead", "data": { "kind": "export", "job_id": 7, "attempt": 5, "last_error": "boom" } });
        assert_eq!(discord_line(&dead), "💀 export job 7 is dead after 5 attempts: boom");
        assert_eq!(discord_line(&json!({})), "Colony: event");
    }

    #[test]
    fn a_refusal_names_the_hook_and_host_and_a_short_escaped_answer() {
        let e = DeliveryError::Status { hook: 3, host: "h.example".into(), status: 500, body: "oops\n".into() };
        assert_eq!(e.to_string(), "webhook 3 (h.example) answered 500: oops");
        let e = DeliveryError::Status { hook: 3, host: "h".into(), status: 502, body: String::new() };
        assert_eq!(e.to_string(), "webhook 3 (h) answered 502");
    }
}
