//! `/metrics`: Prometheus's text format, computed from Postgres at scrape
//! time. The tick runs in another process (often from cron), so nothing here
//! is counted in memory: gauges are read from the tables, and counters from
//! `metric_counters`, which the tick adds to. One scrape runs a handful of
//! queries concurrently; the page is reused for `--metrics-cache` so that
//! several scrapers cost one computation.
//!
//! The page is written by hand, not with a client library: every value is a
//! snapshot read from rows (client libraries count in-process), and the
//! histogram's buckets arrive already counted. `promtool check metrics`
//! checks the result in the tests.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tokio::sync::Mutex;

use super::{Web, WebError};
use crate::counters::Counter;
use colony_vocab::{CellKind, RecordingState};

/// The last page computed, shared by concurrent scrapes.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    page: Mutex<Option<(Instant, Arc<String>)>>,
}

impl Cache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, page: Mutex::new(None) }
    }

    pub async fn get(&self, pool: &PgPool) -> Result<Arc<String>, sqlx::Error> {
        let mut page = self.page.lock().await;
        if let Some((at, text)) = page.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(text.clone());
        }
        let text = Arc::new(render(pool).await?);
        *page = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

pub async fn handler(State(web): State<Web>) -> Result<Response, WebError> {
    let text = web.metrics.get(&web.pool).await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        text.as_str().to_owned(),
    )
        .into_response())
}

/// A page of metric families.
#[derive(Debug, Default)]
pub struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}

const CHANNEL_STATES: [&str; 3] = ["live", "offline", "disabled"];
const JOB_STATES: [&str; 6] = ["available", "running", "retryable", "succeeded", "dead", "cancelled"];
const CELL_STATES: [&str; 5] = ["starting", "running", "stopping", "exited", "dead"];

/// The recordings of one state, summed.
#[derive(Debug, sqlx::FromRow)]
struct RecordingTotals {
    state: String,
    count: i64,
    segments: f64,
    gaps: f64,
    bytes: f64,
    /// Epochs beyond the first: each one a reconnect.
    reconnects: f64,
}

/// Every metric, read now.
pub async fn render(pool: &PgPool) -> Result<String, sqlx::Error> {
    let channels = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT count(*) FILTER (WHERE enabled AND live), count(*) FILTER (WHERE enabled AND NOT live),
                count(*) FILTER (WHERE NOT enabled) FROM channels",
    )
    .fetch_one(pool);
    let recordings = sqlx::query_as::<_, RecordingTotals>(
        "SELECT state::text AS state, count(*) AS count, COALESCE(sum(segment_count), 0)::float8 AS segments,
                COALESCE(sum(gap_count), 0)::float8 AS gaps, COALESCE(sum(bytes), 0)::float8 AS bytes,
                COALESCE(sum(epoch), 0)::float8 AS reconnects
           FROM recordings GROUP BY 1",
    )
    .fetch_all(pool);
    // Per channel being recorded: (login, lag, last segment's duration, epoch).
    type Live = (String, f64, f64, i32);
    let live = sqlx::query_as::<_, Live>(
        "SELECT c.login,
                EXTRACT(EPOCH FROM now() - COALESCE(last.stored_at, r.started_at))::float8,
                COALESCE(last.duration_secs, 0), r.epoch
           FROM recordings r JOIN channels c ON c.id = r.channel_id
           LEFT JOIN LATERAL (
                SELECT stored_at, duration_secs FROM segments s WHERE s.recording_id = r.id AND NOT s.is_gap
                 ORDER BY epoch DESC, media_sequence DESC LIMIT 1) last ON true
          WHERE r.source = 'live' AND r.state = 'recording'
          ORDER BY c.login",
    )
    .fetch_all(pool);
    let jobs = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT kind, state::text, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(pool);
    let cells =
        sqlx::query_as::<_, (String, String, i64)>("SELECT kind::text, state::text, count(*) FROM cells GROUP BY 1, 2")
            .fetch_all(pool);
    let last_tick =
        sqlx::query_scalar::<_, Option<f64>>("SELECT EXTRACT(EPOCH FROM max(at))::float8 FROM ticks").fetch_one(pool);
    let counters = crate::counters::all(pool);
    let (channels, recordings, live, jobs, cells, last_tick, counters) =
        tokio::try_join!(channels, recordings, live, jobs, cells, last_tick, counters)?;

    let mut page = Page::default();
    page.family("colony_channels", "gauge", "Channels by state (live and offline are enabled channels).");
    let (live_n, offline_n, disabled_n) = channels;
    for (state, n) in CHANNEL_STATES.iter().zip([live_n, offline_n, disabled_n]) {
        page.sample("colony_channels", &[("state", state)], n as f64);
    }

    page.family("colony_recordings", "gauge", "Recordings by state.");
    for state in RecordingState::ALL.map(RecordingState::as_str) {
        let n = recordings.iter().find(|r| r.state == state).map_or(0, |r| r.count);
        page.sample("colony_recordings", &[("state", state)], n as f64);
    }
    let sum = |f: fn(&RecordingTotals) -> f64| recordings.iter().map(f).sum::<f64>();
    page.one(
        "colony_segments_stored_total",
        "counter",
        "Segments stored in the ledger, over every recording.",
        sum(|r| r.segments),
    );
    page.one(
        "colony_segment_gaps_total",
        "counter",
        "Gap rows in the ledger: segments that could not be stored, each with its reason.",
        sum(|r| r.gaps),
    );
    page.one("colony_stored_bytes", "gauge", "Bytes of media the ledger points at.", sum(|r| r.bytes));
    page.one(
        "colony_observer_reconnects_total",
        "counter",
        "Reconnects inside the standby window, over every recording (each one began a new epoch).",
        sum(|r| r.reconnects),
    );

    type PerChannel = (&'static str, &'static str, fn(&Live) -> f64);
    let per_channel: [PerChannel; 3] = [
        (
            "colony_recording_lag_seconds",
            "For each channel being recorded: now minus when its last segment was stored.",
            |r| r.1,
        ),
        (
            "colony_recording_segment_duration_seconds",
            "For each channel being recorded: the duration of its last stored segment (about its target duration).",
            |r| r.2,
        ),
        ("colony_recording_epochs", "For each channel being recorded: the epochs of its recording so far.", |r| {
            f64::from(r.3) + 1.0
        }),
    ];
    for (name, help, value) in per_channel {
        page.family(name, "gauge", help);
        for row in &live {
            page.sample(name, &[("channel", &row.0)], value(row));
        }
    }

    page.family("colony_jobs", "gauge", "Jobs by kind and state.");
    let kinds: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
    for kind in kinds {
        for state in JOB_STATES {
            let n = jobs.iter().find(|j| j.0 == kind && j.1 == state).map_or(0, |j| j.2);
            page.sample("colony_jobs", &[("kind", kind), ("state", state)], n as f64);
        }
    }

    page.family("colony_cells", "gauge", "Cells by kind and state.");
    for kind in CellKind::ALL.map(CellKind::as_str) {
        for state in CELL_STATES {
            let n = cells.iter().find(|c| c.0 == kind && c.1 == state).map_or(0, |c| c.2);
            page.sample("colony_cells", &[("kind", kind), ("state", state)], n as f64);
        }
    }

    page.one(
        "colony_last_tick_timestamp_seconds",
        "gauge",
        "When the last tick saved its plan (Unix time; 0 if none in the last day).",
        last_tick.unwrap_or(0.0),
    );
    write_counters(&mut page, &counters);
    page.family("colony_build_info", "gauge", "This server's version, as a label.");
    page.sample("colony_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    Ok(page.0)
}

/// The tick's counters: ticks by outcome, actions, probe errors, and the
/// duration histogram (its buckets are stored counted, `le` by `le`).
fn write_counters(page: &mut Page, rows: &[Counter]) {
    let family = |page: &mut Page, name: &str, kind: &str, help: &str, always: &[(&str, &str)]| {
        page.family(name, kind, help);
        let mine: Vec<&Counter> = rows.iter().filter(|r| r.name == name).collect();
        if mine.is_empty() {
            page.sample(name, always, 0.0);
        }
        for c in mine {
            let l: Vec<(&str, &str)> = c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            page.sample(name, &l, c.value);
        }
    };
    family(
        page,
        "colony_ticks_total",
        "counter",
        "Ticks by outcome: ok, partly_failed (some actions failed) or failed.",
        &[("outcome", "ok")],
    );
    family(
        page,
        "colony_tick_actions_total",
        "counter",
        "Actions the ticks carried out, by action and outcome.",
        &[("action", "none"), ("outcome", "ok")],
    );
    family(
        page,
        "colony_probe_errors_total",
        "counter",
        "Liveness probes that failed, by platform (or source kind) and class (resolver, playlist, timeout, api, frozen, panic).",
        &[("platform", "none"), ("class", "none")],
    );

    page.family("colony_tick_duration_seconds", "histogram", "How long each tick took.");
    let mut buckets: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.name == "colony_tick_duration_seconds_bucket")
        .filter_map(|r| {
            let le = r.labels.get("le")?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, r.value))
        })
        .collect();
    for le in crate::counters::TICK_BUCKETS.iter().copied().chain([f64::INFINITY]) {
        if !buckets.iter().any(|b| b.0 == le) {
            buckets.push((le, 0.0));
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Stored per bucket as "ticks at or under le", so they are cumulative already.
    for (le, n) in &buckets {
        page.sample("colony_tick_duration_seconds_bucket", &[("le", &number(*le))], *n);
    }
    let single = |name: &str| rows.iter().find(|r| r.name == name).map_or(0.0, |r| r.value);
    page.sample("colony_tick_duration_seconds_sum", &[], single("colony_tick_duration_seconds_sum"));
    page.sample("colony_tick_duration_seconds_count", &[], single("colony_tick_duration_seconds_count"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_wants() {
        let mut page = Page::default();
        page.sample("colony_x", &[("channel", "a\"b\\c\nd")], 1.5);
        assert_eq!(page.0, "colony_x{channel=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    #[test]
    fn the_histogram_has_every_bucket_in_order_even_before_the_first_tick() {
        let mut page = Page::default();
        write_counters(&mut page, &[]);
        let buckets: Vec<&str> =
            page.0.lines().filter(|l| l.starts_with("colony_tick_duration_seconds_bucket")).collect();
        assert_eq!(buckets.len(), crate::counters::TICK_BUCKETS.len() + 1);
        assert!(buckets[0].contains("le=\"0.05\""), "{buckets:?}");
        assert!(buckets.last().unwrap().contains("le=\"+Inf\""), "{buckets:?}");
    }
}
