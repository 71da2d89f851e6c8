//! Resuming: a replacement cell continues the recording its predecessor
//! started. It reads the ledger once, as a stream, for the running totals,
//! the live playlist's window and where the open epoch stands, so that
//! picking up costs one pass however long the recording already is.

use std::ops::RangeInclusive;

use futures::TryStreamExt;
use rangemap::RangeInclusiveSet;

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

impl Resumed {
    /// Count what a predecessor on this host left in the spool as held:
    /// the spool uploader puts it in storage and the ledger as soon as
    /// storage takes it. Left out, a segment spooled above the ledger's
    /// last row, or in a hole below it, looked lost to a replacement that
    /// started after it left the source's window, and became a gap for
    /// media this host still had (issue 24: the chaos suite's `live1`).
    /// Sequences of other epochs, and an epoch the ledger has no row of
    /// yet, are left alone: a playlist that still offers them is fetched.
    pub(super) fn include_spooled(&mut self, spooled: impl IntoIterator<Item = (i32, u64)>) {
        let Some(high) = self.high else { return };
        let mine: std::collections::BTreeSet<u64> = spooled
            .into_iter()
            .filter(|(epoch, _)| *epoch >= 0 && *epoch as u32 == self.epoch)
            .map(|(_, s)| s)
            .collect();
        let Some(&top) = mine.last() else { return };
        let mut holes: RangeInclusiveSet<u64> = self.holes.drain(..).collect();
        let mut old: RangeInclusiveSet<u64> = self.old_holes.drain(..).collect();
        if top > high.saturating_add(1) {
            holes.insert(high + 1..=top - 1);
        }
        self.high = Some(high.max(top));
        for &seq in &mine {
            holes.remove(seq..=seq);
            old.remove(seq..=seq);
        }
        self.holes = holes.into_iter().collect();
        self.old_holes = old.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resumed(high: Option<u64>, holes: Vec<RangeInclusive<u64>>) -> Resumed {
        Resumed {
            rows: 1,
            totals: Progress::default(),
            live: LiveWindow::new(4),
            epoch: 2,
            high,
            holes,
            old_holes: vec![1..=3],
            inits: 0,
            last_init: None,
            last_secs: 2.0,
        }
    }

    #[test]
    fn spooled_segments_are_held_not_holes() {
        // Ledger: ..=10, a hole at 6..=8; the spool: 7 and 12..=13 of this epoch, 20 of another.
        let mut r = resumed(Some(10), vec![6..=8]);
        r.include_spooled([(2, 7), (2, 12), (2, 13), (1, 20), (2, 2)]);
        assert_eq!(r.high, Some(13));
        assert_eq!(r.holes, [6..=6, 8..=8, 11..=11]);
        assert_eq!(r.old_holes, [1..=1, 3..=3]);
    }

    #[test]
    fn an_empty_spool_or_an_epoch_without_rows_changes_nothing() {
        let mut r = resumed(Some(10), vec![6..=8]);
        r.include_spooled([(1, 20)]);
        assert_eq!((r.high, r.holes.clone()), (Some(10), vec![6..=8]));
        let mut r = resumed(None, vec![]);
        r.include_spooled([(2, 5)]);
        assert_eq!((r.high, r.holes), (None, vec![]));
    }
}
