//! The dashboard's admin actions: the same functions the CLI calls. A
//! browser's form gets a redirect back to the page it came from; an API
//! client gets JSON. The CSRF check happened before any of these run
//! (`super::guard`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use colony::queue::{CancelOutcome, Enqueued, JobArgs, Queue, RecordingArgs};

use super::{Web, WebError};
use crate::channels::{self, ChannelExtras, NewChannel};

/// A redirect to `next` for a form, JSON for anyone else.
fn done(headers: &HeaderMap, next: Option<&str>, body: Value) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        // Only a path on this site, however a browser reads it: never an open redirect.
        let next = next.and_then(super::access::safe_next).unwrap_or("/");
        return Redirect::to(next).into_response();
    }
    (StatusCode::OK, Json(body)).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Form {
    pub next: Option<String>,
    pub url: Option<String>,
    pub login: Option<String>,
    pub platform: Option<String>,
}

fn form(body: &axum::body::Bytes) -> Form {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub async fn retry(
    State(web): State<Web>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let queue = Queue::new(web.pool.clone());
    match queue.retry(id).await {
        Ok(_) => Ok(done(&headers, form(&body).next.as_deref(), json!({ "job": id, "retried": true }))),
        Err(colony::queue::QueueError::NotFound(_)) => Err(WebError::NotFound(format!("no job {id}"))),
        Err(colony::queue::QueueError::NotRetryable { .. }) => {
            Err(WebError::BadRequest(format!("job {id} cannot be retried in its state")))
        }
        Err(e) => Err(WebError::internal(e)),
    }
}

pub async fn cancel(
    State(web): State<Web>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    match Queue::new(web.pool.clone()).cancel(id).await.map_err(WebError::internal)? {
        CancelOutcome::NotFound => Err(WebError::NotFound(format!("no job {id}"))),
        outcome => Ok(done(
            &headers,
            form(&body).next.as_deref(),
            json!({ "job": id, "cancelled": matches!(outcome, CancelOutcome::Cancelled) }),
        )),
    }
}

async fn set_enabled(web: &Web, login: &str, on: bool, headers: &HeaderMap, body: &[u8]) -> Result<Response, WebError> {
    channels::set_enabled(&web.pool, login, on).await?;
    let next = form(&axum::body::Bytes::copy_from_slice(body)).next;
    Ok(done(headers, next.as_deref(), json!({ "channel": login, "enabled": on })))
}

pub async fn enable(
    State(web): State<Web>,
    Path(login): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    set_enabled(&web, &login, true, &headers, &body).await
}

pub async fn disable(
    State(web): State<Web>,
    Path(login): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    set_enabled(&web, &login, false, &headers, &body).await
}

/// Add a channel: `url` (a platform page or an HLS playlist), with `login`
/// (needed for HLS) or `platform` + `login`, as `channel add` takes them.
pub async fn add_channel(
    State(web): State<Web>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let json_body: Option<Form> = serde_json::from_slice(&body).ok();
    let f = json_body.unwrap_or_else(|| form(&body));
    let blank = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let (url, login, platform) = (blank(&f.url), blank(&f.login), blank(&f.platform));
    let new = NewChannel::from_cli(url.as_deref(), login.as_deref(), platform.as_deref(), ChannelExtras::default())?;
    let id = channels::add(&web.pool, &new).await?;
    let next = format!("/channels/{}", new.login);
    Ok(done(&headers, Some(&next), json!({ "id": id, "login": new.login.to_string() })))
}

/// Queue the recording's MP4 export (once: a second click finds the first job).
pub async fn export(
    State(web): State<Web>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let recording =
        super::data::recording(&web.pool, id).await?.ok_or_else(|| WebError::NotFound(format!("no recording {id}")))?;
    if recording.segment_count == 0 {
        return Err(WebError::BadRequest(format!("recording {id} has no segments to export yet")));
    }
    let job = JobArgs::Export(RecordingArgs { recording_id: id }).job();
    let (job_id, created) = match Queue::new(web.pool.clone()).enqueue(&job).await.map_err(WebError::internal)? {
        Enqueued::Created(j) => (j, true),
        Enqueued::Duplicate(j) => (j, false),
    };
    let next = form(&body).next.unwrap_or_else(|| format!("/recordings/{id}"));
    Ok(done(&headers, Some(&next), json!({ "job": job_id, "created": created })))
}
