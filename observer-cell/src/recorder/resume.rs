//! Resuming: a replacement cell continues the recording its predecessor
//! started. It reads the ledger once, as a stream, for the running totals,
//! the live playlist's window and where the open epoch stands, so that
//! picking up costs one pass however long the recording already is.

use std::ops::RangeInclusive;

use futures::TryStreamExt;

use colony::hls::ParseLimits;
use colony::recording::{self, LiveWindow, Progress};

/// What a replacement picks up from the ledger.
pub(super) struct Resumed {
    pub(super) rows: u64,
    pub(super) totals: Progress,
    pub(super) live: LiveWindow,
    pub(super) epoch: u32,
    pub(super) high: Option<u64>,
    pub(super) holes: Vec<RangeInclusive<u64>>,
    /// Holes too far below the last sequence for any live window to offer again.
    pub(super) old_holes: Vec<RangeInclusive<u64>>,
    pub(super) inits: usize,
    /// The open epoch's init section and the duration of its last segment,
    /// for rows adopted from storage.
    pub(super) last_init: Option<String>,
    pub(super) last_secs: f64,
}

/// Read the ledger once, as a stream: running totals, the live window, and
/// the open epoch's highest sequence, holes and init sections.
pub(super) async fn resume(ledger: &recording::Ledger, db_epoch: i32, window: usize) -> Result<Resumed, sqlx::Error> {
    let mut r = Resumed {
        rows: 0,
        totals: Progress::default(),
        live: LiveWindow::new(window),
        epoch: 0,
        high: None,
        holes: Vec::new(),
        old_holes: Vec::new(),
        inits: 0,
        last_init: None,
        last_secs: 0.0,
    };
    let mut current: Option<i32> = None;
    let mut inits = std::collections::HashSet::new();
    let mut rows = ledger.stream();
    while let Some(row) = rows.try_next().await? {
        r.rows += 1;
        r.totals.add(&row);
        if current != Some(row.epoch) {
            current = Some(row.epoch);
            r.high = None;
            r.holes.clear();
            inits.clear();
            r.last_init = None;
        }
        let first = row.media_sequence.max(0) as u64;
        let span = if row.is_gap { u64::try_from(row.gap_count).unwrap_or(0).max(1) } else { 1 };
        let last = first.saturating_add(span - 1);
        if let Some(high) = r.high
            && first > high.saturating_add(1)
        {
            r.holes.push(high + 1..=first - 1);
        }
        r.high = Some(r.high.map_or(last, |h| h.max(last)));
        if let Some(init) = &row.init_key {
            inits.insert(init.clone());
            r.last_init = Some(init.clone());
        }
        if !row.is_gap {
            r.last_secs = row.duration_secs;
        }
        r.live.insert(row);
    }
    r.inits = inits.len();
    r.epoch = current.unwrap_or(0).max(db_epoch).max(0) as u32;
    if current.is_some_and(|c| c.max(0) as u32 != r.epoch) {
        // The recording moved to an epoch the ledger has no row of yet.
        (r.high, r.inits, r.last_init) = (None, 0, None);
        r.holes.clear();
    }
    // No live window reaches further back than a playlist's segment limit.
    if let Some(high) = r.high {
        let reach = high.saturating_sub(ParseLimits::LIVE.max_segments as u64);
        let (old, recent): (Vec<_>, Vec<_>) = r.holes.drain(..).partition(|h| *h.end() < reach);
        (r.old_holes, r.holes) = (old, recent);
    }
    Ok(r)
}
