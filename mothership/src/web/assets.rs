//! The dashboard's script and style files, built into the binary. They are
//! files, not inline blocks, so that the CSP can refuse every inline script
//! and style: an injected `<script>` or `style=` would not run even if an
//! escape were ever missed.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const ASSETS: &[(&str, &str, &str)] = &[
    ("colony.css", "text/css; charset=utf-8", include_str!("assets/colony.css")),
    ("page.js", "text/javascript; charset=utf-8", include_str!("assets/page.js")),
    ("player.js", "text/javascript; charset=utf-8", include_str!("assets/player.js")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("assets/chat.js")),
    ("jobs.js", "text/javascript; charset=utf-8", include_str!("assets/jobs.js")),
];

/// `GET /static/{name}`
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
