//! Media for the browser. A recording's playlist is rendered from its ledger
//! on each request: an EVENT playlist (no end tag) while the recording is
//! open, so a player follows it as it grows and can seek back to the start,
//! and the VOD playlist once it is finalized. Its segment URIs all point at
//! `/media/recordings/{id}/objects/…`, which serves only keys under that
//! recording's prefix: where the store can presign (S3) it answers with a
//! redirect to a presigned URL, so the bytes never pass through this
//! server, and a playlist of a day-long recording costs no signing at all
//! (each segment is signed when, and if, the player asks for it).

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use colony::recording::{PlaylistKind, render_with};
use colony::storage::ObjectKey;
use tower::ServiceExt;

use super::data::{self, Recording};
use super::{Web, WebError};

async fn open_recording(web: &Web, id: i64) -> Result<Recording, WebError> {
    data::recording(&web.pool, id).await?.ok_or_else(|| WebError::NotFound(format!("no recording {id}")))
}

/// `GET /media/recordings/{id}/playlist.m3u8`
pub async fn playlist(State(web): State<Web>, Path(id): Path<i64>) -> Result<Response, WebError> {
    let recording = open_recording(&web, id).await?;
    let rows = data::ledger(&web.pool, id).await?;
    let open = colony_vocab::RecordingState::parse(&recording.state).is_some_and(colony_vocab::RecordingState::is_open);
    let kind = if open { PlaylistKind::Event } else { PlaylistKind::Vod };
    let text = render_with(&rows, kind, &|key: &str| format!("/media/recordings/{id}/objects/{key}"));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        text,
    )
        .into_response())
}

/// `GET /media/recordings/{id}/objects/{*key}`: an object of that recording.
/// A key outside the recording's prefix, or one with `..`, is refused.
pub async fn object(
    State(web): State<Web>,
    Path((id, key)): Path<(i64, String)>,
    request: Request,
) -> Result<Response, WebError> {
    let parsed = ObjectKey::parse(&key).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let prefix: Option<String> = sqlx::query_scalar("SELECT storage_prefix FROM recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(&web.pool)
        .await?;
    let prefix = prefix.ok_or_else(|| WebError::NotFound(format!("no recording {id}")))?;
    if !key.starts_with(&format!("{prefix}/")) {
        return Err(WebError::NotFound(format!("recording {id} has no object {key}")));
    }
    if let Some(url) = web.presigner.presign_get(&parsed, web.media_url_ttl).await.map_err(WebError::internal)? {
        return Ok(Redirect::temporary(&url).into_response());
    }
    match web.store.local_path(&parsed) {
        // ServeFile answers Range requests, so an export can be sought in.
        Some(path) => match tower_http::services::ServeFile::new(path).oneshot(request).await {
            Ok(response) => Ok(response.into_response()),
            Err(e) => Err(WebError::internal(e)),
        },
        None => Err(WebError::NotFound(format!("recording {id} has no object {key}"))),
    }
}

/// The thumbnails job's poster and storyboard, and the export, where they exist.
#[derive(Debug, Default)]
pub struct Extras {
    pub poster: Option<String>,
    pub storyboard_vtt: Option<String>,
    pub export: Option<String>,
}

impl Extras {
    pub async fn find(web: &Web, recording: &Recording) -> Self {
        let here = |rest: String| async move {
            let key = ObjectKey::parse(&format!("{}/{rest}", recording.storage_prefix)).ok()?;
            web.store.head(&key).await.ok()?;
            Some(format!("/media/recordings/{}/objects/{key}", recording.id))
        };
        let (poster, storyboard_vtt, export) = tokio::join!(
            here("thumbnails/poster.jpg".into()),
            here("thumbnails/sprite.vtt".into()),
            here(format!("export/{}.mp4", recording.id))
        );
        Self { poster, storyboard_vtt, export }
    }
}
