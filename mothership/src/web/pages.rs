//! The dashboard's pages, rendered on the server with maud: every string
//! from a source, a platform or a row is escaped by the template. The
//! little JavaScript and CSS there is are files (`assets/`), so the CSP
//! allows no inline script or style at all; scripts read their data from
//! attributes, never from a string spliced into a script.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::api::{self, Overview};
use super::data::SpanKind;
use super::{Web, WebError};
use crate::views;

fn layout(title: &str, web: &Web, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(web.csrf());
                title { (title) " · Colony" }
                link rel="stylesheet" href="/static/colony.css";
                script src="/static/page.js" defer {}
            }
            body {
                header {
                    b { "Colony" }
                    a href="/" { "Overview" }
                    a href="/jobs" { "Jobs" }
                    a href="/cells" { "Cells & decisions" }
                    a href="/metrics" { "Metrics" }
                }
                main { (body) }
            }
        }
    }
}

/// A hidden CSRF field and a button that POSTs to `action`.
fn button(web: &Web, action: &str, label: &str, next: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(web.csrf());
            input type="hidden" name="next" value=(next);
            button type="submit" { (label) }
        }
    }
}

fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s % 3600 / 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n => format!("{:.0} kB", n / 1e3),
    }
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
}

fn state_class(state: &str) -> &'static str {
    match state {
        "recording" | "running" | "complete" | "succeeded" | "ok" => "ok",
        "failed" | "dead" | "interrupted" => "bad",
        "standby" | "retryable" | "stopping" | "starting" => "warn",
        _ => "muted",
    }
}

pub fn login_page(message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign in · Colony" } link rel="stylesheet" href="/static/colony.css"; }
            body { main {
                h1 { "Colony" }
                @if let Some(m) = message { p.warn { (m) } }
                form method="post" action="/login" {
                    label { "Token " input type="password" name="token" autofocus; }
                    " " button type="submit" { "Sign in" }
                }
                p.muted { "The token is the server's COLONY_WEB_TOKEN." }
            } }
        }
    }
}

pub async fn login() -> Markup {
    login_page(None)
}

pub async fn overview(State(web): State<Web>) -> Result<Markup, WebError> {
    let Overview { live, harvest, queue, failed_decisions, channels } = api::overview_data(&web).await?;
    let body = html! {
        h1 { "Overview" }
        p.muted { (channels) " channel(s), " (live.len()) " live or recording." }
        h2 { "Live channels" }
        @if live.is_empty() { p.muted { "Nothing is live." } } @else {
            table {
                tr { th { "Channel" } th { "Title" } th { "Recording" } th { "Duration" } th { "Lag" } th { "Gaps" } th { "Epochs" } th { "Observer" } }
                @for c in &live {
                    tr {
                        td { a href={ "/channels/" (c.login) } { (c.display_name) } " " @if c.live { span.pill.live { "live" } } }
                        td { (c.stream_title.as_deref().unwrap_or("")) }
                        td { @if let Some(r) = c.recording_id {
                            a href={ "/recordings/" (r) } { "#" (r) } " "
                            span class=(state_class(c.recording_state.as_deref().unwrap_or(""))) { (c.recording_state.as_deref().unwrap_or("")) }
                        } @else { span.muted { "none yet" } } }
                        td { (c.duration_secs.map(duration).unwrap_or_default()) }
                        td { (c.lag_secs.map(|l| format!("{l:.1} s")).unwrap_or_default()) }
                        td { (c.gaps.unwrap_or(0)) }
                        td { (c.epoch.map(|e| e + 1).unwrap_or(0)) }
                        td { @match (&c.observer_state, c.heartbeat_age_secs) {
                            (Some(s), Some(age)) => span class=(if age < 60.0 { "ok" } else { "bad" }) { (s) ", heartbeat " (format!("{age:.0}")) " s ago" },
                            (Some(s), None) => span.warn { (s) },
                            (None, _) => span.bad { "no observer" },
                        } }
                    }
                }
            }
        }
        h2 { "Harvest cells" }
        @if harvest.is_empty() { p.muted { "None running." } } @else {
            table {
                tr { th { "Cell" } th { "State" } th { "Host" } th { "Job" } th { "Progress" } }
                @for h in &harvest {
                    tr {
                        td { code { (h.id.to_string().chars().take(8).collect::<String>()) } }
                        td { (h.state) }
                        td { (h.host.as_deref().unwrap_or("")) }
                        td { @if let (Some(id), Some(kind)) = (h.job_id, &h.job_kind) { (kind) " #" (id) } @else { span.muted { "idle" } } }
                        td { (progress_bar(h.job_progress.as_ref())) }
                    }
                }
            }
        }
        h2 { "Queue" }
        @if queue.is_empty() { p.muted { "Empty." } } @else {
            table {
                tr { th { "Kind" } th { "Ready" } th { "Running" } th { "Delayed" } th { "Dead" } }
                @for k in &queue { tr { td { (k.kind) } td { (k.ready) } td { (k.running) } td { (k.delayed) } td { (k.dead) } } }
            }
        }
        h2 { "Recent failed decisions" }
        (decisions_table(&failed_decisions))
        h2 { "Add a channel" }
        form method="post" action="/api/v1/channels" {
            input type="hidden" name="csrf" value=(web.csrf());
            input name="url" placeholder="https://www.twitch.tv/NAME or an HLS URL" size="50";
            " " input name="login" placeholder="name (needed for HLS)";
            " " button type="submit" { "Add" }
        }
    };
    Ok(layout("Overview", &web, body))
}

fn progress_bar(progress: Option<&serde_json::Value>) -> Markup {
    let percent = progress.and_then(|p| p.get("percent")).and_then(serde_json::Value::as_f64);
    html! {
        @if let Some(p) = percent {
            span.bar { div data-width=(format!("{:.1}", p.clamp(0.0, 100.0))) {} } " " (format!("{p:.0}%"))
        } @else { span.muted { "-" } }
    }
}

fn decisions_table(rows: &[views::Decision]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { "None." } } @else {
            table {
                tr { th { "At" } th { "Action" } th { "Subject" } th { "Outcome" } th { "Reason" } }
                @for d in rows {
                    tr {
                        td { (when(Some(d.at))) }
                        td { (d.action) }
                        td { (d.subject) }
                        td class=(state_class(&d.outcome)) { (d.outcome) @if let Some(e) = &d.error { ": " (e) } }
                        td { (d.reason) }
                    }
                }
            }
        }
    }
}

pub async fn channel(State(web): State<Web>, Path(login): Path<String>) -> Result<Markup, WebError> {
    let page = api::channel_data(&web, &login).await?;
    let c = &page.channel;
    let here = format!("/channels/{}", c.login);
    let body = html! {
        h1 { (c.display_name) " " @if c.live { span.pill.live { "live" } } }
        p.muted { (c.login) " · " (c.platform.as_deref().unwrap_or(&c.source_kind)) " · "
            @if c.enabled { "enabled " (button(&web, &format!("/api/v1/channels/{}/disable", c.login), "Disable", &here)) }
            @else { "disabled " (button(&web, &format!("/api/v1/channels/{}/enable", c.login), "Enable", &here)) } }
        @if let Some(e) = &c.probe_error { p.bad { "Last probe: " (e) } }
        h2 { "Recordings" }
        @if page.recordings.is_empty() { p.muted { "None yet." } } @else {
            table {
                tr { th {} th { "Recording" } th { "Title" } th { "State" } th { "Started" } th { "Duration" } th { "Size" } th { "Gaps" } th { "Chapters" } }
                @for r in &page.recordings {
                    tr {
                        td { img.poster src={ "/media/recordings/" (r.id) "/objects/" (r.storage_prefix) "/thumbnails/poster.jpg" } alt="" width="96"; }
                        td { a href={ "/recordings/" (r.id) } { "#" (r.id) } " " span.muted { (r.source) } }
                        td { (r.title.as_deref().unwrap_or("")) }
                        td class=(state_class(&r.state)) { (r.state) }
                        td { (when(Some(r.started_at))) }
                        td { (duration(r.duration_secs)) }
                        td { (bytes(r.bytes)) }
                        td { (r.gap_count) }
                        td { (r.chapters) }
                    }
                }
            }
        }
    };
    Ok(layout(&c.display_name, &web, body))
}

pub async fn recording(State(web): State<Web>, Path(id): Path<i64>) -> Result<Markup, WebError> {
    let page = api::recording_data(&web, id).await?;
    let r = &page.recording;
    let total: f64 = page.timeline.iter().map(|s| s.duration_secs).sum::<f64>().max(0.001);
    let pct = |x: f64| format!("{:.3}", (x / total * 100.0).clamp(0.0, 100.0));
    let here = format!("/recordings/{id}");
    let sprite = page.storyboard_vtt.as_deref().map(|v| v.replace("sprite.vtt", "sprite.jpg"));
    let open = colony_vocab::RecordingState::parse(&r.state).is_some_and(colony_vocab::RecordingState::is_open);
    let body = html! {
        h1 { a href={ "/channels/" (r.channel) } { (r.channel_name) } " · #" (r.id) " "
            span class=(state_class(&r.state)) { (r.state) } }
        @if let Some(t) = &r.title { p { (t) @if let Some(c) = &r.category { span.muted { " · " (c) } } } }
        div.watch {
        video #player controls muted autoplay playsinline preload="metadata" crossorigin="anonymous" src=(page.playlist)
            poster=[page.poster.as_deref()] {}
        @if page.chat_chunks > 0 {
            div #chat data-src={ "/api/v1/recordings/" (r.id) "/chat" } { div.muted { "chat" } ol {} }
        }
        }
        p #nohls.warn hidden { "This browser cannot play HLS by itself. Open "
            a href=(page.playlist) { "the playlist" } " in a player such as VLC or mpv, or export an MP4 below." }
        div #timeline.timeline data-duration=(format!("{total:.3}")) data-storyboard=[page.storyboard_vtt.as_deref()]
            data-sprite=[sprite.as_deref()] title="click to seek" {
            @for (i, s) in page.timeline.iter().enumerate() {
                div class={ "span-" (match s.kind { SpanKind::Media => "media", SpanKind::Ad => "ad", SpanKind::Gap => "gap" })
                    @if i > 0 && page.timeline[i - 1].epoch != s.epoch { " epoch" } }
                    data-left=(pct(s.start_secs)) data-width=(pct(s.duration_secs))
                    title=(match (&s.kind, &s.reason) {
                        (SpanKind::Gap, Some(why)) => format!("gap: {why}"),
                        (kind, _) => format!("{kind:?}, epoch {}, {} segment(s)", s.epoch, s.segments),
                    }) {}
            }
            @for c in &page.chapters {
                div.chapter data-left=(pct((c.at - r.started_at).num_milliseconds() as f64 / 1000.0))
                    title=(format!("chapter: {} {}", c.title.as_deref().unwrap_or(""), c.category.as_deref().unwrap_or(""))) {}
            }
        }
        div #storyboard {}
        p.legend.muted { span.media { "■ media" } span.warn { "■ ad" } span.bad { "■ gap" } span { "| chapter" } }
        table {
            tr { th { "Started" } td { (when(Some(r.started_at))) } th { "Ended" } td { (when(r.ended_at)) } }
            tr { th { "Duration" } td { (duration(r.duration_secs)) } th { "Size" } td { (bytes(r.bytes)) } }
            tr { th { "Segments" } td { (r.segment_count) } th { "Gaps" } td { (r.gap_count) } }
            tr { th { "Epochs" } td { (r.epoch + 1) } th { "Chapters" } td { (r.chapters) } }
            @if let Some(e) = &r.error { tr { th { "Error" } td colspan="3" { (e) } } }
        }
        @if !page.chapters.is_empty() {
            h2 { "Chapters" }
            table { @for c in &page.chapters { tr { td { (when(Some(c.at))) } td { (c.title.as_deref().unwrap_or("")) } td { (c.category.as_deref().unwrap_or("")) } } } }
        }
        h2 { "Export" }
        @if let Some(url) = &page.export { p { a href=(url) download { "Download the MP4" } } }
        @else if let Some(job) = &page.export_job {
            p { "Export job #" (job.id) ": " span class=(state_class(&job.state)) { (job.state) } " " (progress_bar(job.progress.as_ref()))
                @if let Some(e) = &job.last_error { " " span.bad { (e) } } }
        }
        @if page.export.is_none() && !open && r.segment_count > 0 {
            (button(&web, &format!("/api/v1/recordings/{id}/export"), "Export MP4", &here))
        }
        @if open { p.muted { "The recording is still going: the player follows it, and it can be exported once it ends." } }
        script src="/static/player.js" {}
        @if page.chat_chunks > 0 { script src="/static/chat.js" {} }
    };
    Ok(layout(&format!("Recording {id}"), &web, body))
}

pub async fn jobs(State(web): State<Web>) -> Result<Markup, WebError> {
    let rows = views::jobs(&web.pool, None, None, 200).await?;
    let body = html! {
        h1 { "Jobs" }
        p.muted { "Open and failed jobs, newest first; progress updates live." }
        table {
            tr { th { "Job" } th { "Kind" } th { "State" } th { "Attempt" } th { "Progress" } th { "Last error" } th {} }
            @for j in &rows {
                tr #{ "job-" (j.id) } {
                    td { (j.id) }
                    td { (j.kind) }
                    td class=(state_class(&j.state)) { (j.state) }
                    td { (j.attempt) "/" (j.max_attempts) }
                    td { span.bar { div data-width=(j.progress.as_ref().and_then(|p| p.get("percent")).and_then(serde_json::Value::as_f64).unwrap_or(0.0).clamp(0.0, 100.0)) {} }
                        " " span.pct {} }
                    td { (j.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if matches!(j.state.as_str(), "dead" | "cancelled" | "retryable") { (button(&web, &format!("/api/v1/jobs/{}/retry", j.id), "Retry", "/jobs")) }
                        @if matches!(j.state.as_str(), "available" | "running" | "retryable") { " " (button(&web, &format!("/api/v1/jobs/{}/cancel", j.id), "Cancel", "/jobs")) }
                    }
                }
            }
        }
        script src="/static/jobs.js" {}
    };
    Ok(layout("Jobs", &web, body))
}

pub async fn cells(State(web): State<Web>) -> Result<Markup, WebError> {
    let (cells, decisions) =
        tokio::try_join!(views::cells(&web.pool, true, 100), views::decisions(&web.pool, 100, false))?;
    let body = html! {
        h1 { "Cells" }
        table {
            tr { th { "Cell" } th { "Kind" } th { "State" } th { "Backend" } th { "Channel" } th { "Jobs" } th { "Heartbeat" } th { "Started" } }
            @for c in &cells {
                tr {
                    td { code { (c.id.to_string().chars().take(8).collect::<String>()) } }
                    td { (c.kind) }
                    td class=(state_class(&c.state)) { (c.state) @if let Some(code) = c.exit_code { " (" (code) ")" } }
                    td { (c.backend) }
                    td { (c.channel.as_deref().unwrap_or("")) }
                    td { (c.running_jobs) }
                    td { (when(c.last_heartbeat)) }
                    td { (when(Some(c.started_at))) }
                }
            }
        }
        h2 { "Decisions" }
        p.muted { "What the mothership did and why, newest first." }
        (decisions_table(&decisions))
    };
    Ok(layout("Cells", &web, body))
}
