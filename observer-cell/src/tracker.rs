//! The recorder's bookkeeping, kept pure so every rule can be tested with
//! plain playlists: which segments of a live window to fetch, which sequence
//! numbers are lost for good (explicit gaps), and when the source has started
//! over (a new epoch: an init-section change, numbering that went back, or a
//! jump forward larger than the time since the last load can explain).
//!
//! Its memory is O(window), never O(recording) or O(jump): everything at or
//! below `high` is resolved unless it is in `inflight` (handed out, not yet
//! reported) or `missing` (a failed fetch, or a hole a previous cell left,
//! kept as ranges). A jump of any size is one gap step with a count.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use rangemap::RangeInclusiveSet;

use colony::hls::{InitRef, MediaPlaylist, SourceSegment};

/// Most segments handed out and not yet reported back. Past it, the rest of
/// a window waits for the next load (and becomes a gap if it leaves first),
/// so a source faster than the network cannot grow the backlog without bound.
pub const MAX_IN_FLIGHT: usize = 2048;

/// Recent URIs kept to tell a stale playlist copy from a restarted source.
const URI_MEMORY: u64 = 2048;

/// Why sequence numbers became a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The source's window moved past them between two loads.
    Skipped,
    /// Fetching failed while the source offered them, and the window moved on.
    LeftWindow,
    /// Not stored when the epoch (or the recording) ended.
    Unfinished,
}

/// What the recorder should do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new epoch begins (init change, or the source restarted or renumbered).
    NewEpoch { epoch: u32, reason: EpochReason },
    /// Fetch, store and ledger this segment.
    Fetch { epoch: u32, segment: Box<SourceSegment> },
    /// These sequence numbers are lost; record them as one gap row.
    Gap { epoch: u32, first_sequence: u64, count: u64, estimated_secs: f64, lost: Lost },
}

/// Why the tracker started a new epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochReason {
    Restarted,
    InitChanged,
    /// Numbering jumped forward by this much, more than could have been published.
    Renumbered {
        by: u64,
    },
}

impl std::fmt::Display for EpochReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpochReason::Restarted => f.write_str("the source restarted its media sequence"),
            EpochReason::InitChanged => f.write_str("the source changed its init section"),
            EpochReason::Renumbered { by } => write!(
                f,
                "the source's media sequence jumped by {by}, more than it could have published since the last load"
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tracker {
    epoch: u32,
    /// Highest sequence handed out (or found in the ledger) in this epoch.
    high: Option<u64>,
    inflight: BTreeSet<u64>,
    missing: RangeInclusiveSet<u64>,
    init: Option<InitRef>,
    /// Path of each recent sequence's URI, to tell a stale playlist copy
    /// (same URIs) from a source that restarted its numbering (new URIs).
    uris: BTreeMap<u64, String>,
    /// Estimated duration of one segment, for gap estimates.
    typical_secs: f64,
}

impl Tracker {
    /// A tracker for a fresh recording, at epoch 0.
    pub fn new() -> Self {
        Self::resume(0, None, std::iter::empty(), None)
    }

    /// Continue a recording whose ledger covers `epoch` up to `high`, except
    /// for `holes` (a replacement cell). Holes are fetched if the source still
    /// offers them, gaps otherwise.
    pub fn resume(
        epoch: u32,
        high: Option<u64>,
        holes: impl IntoIterator<Item = RangeInclusive<u64>>,
        init: Option<InitRef>,
    ) -> Self {
        let mut missing = RangeInclusiveSet::new();
        for hole in holes {
            if high.is_some_and(|h| *hole.end() <= h) && !hole.is_empty() {
                missing.insert(hole);
            }
        }
        Self { epoch, high, inflight: BTreeSet::new(), missing, init, uris: BTreeMap::new(), typical_secs: 0.0 }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Nothing has been handed out (or found in the ledger) in the current epoch.
    pub fn epoch_is_empty(&self) -> bool {
        self.high.is_none() && self.inflight.is_empty()
    }

    /// How many entries the tracker holds: bounded by the window and the
    /// in-flight limit, whatever the source sends.
    pub fn footprint(&self) -> usize {
        self.inflight.len() + self.missing.iter().count() + self.uris.len()
    }

    /// Does this playlist continue the current epoch (it offers a segment we
    /// already took, under the same number and URI)? A source that comes back
    /// after a blip does; a restarted stream does not.
    pub fn continues(&self, playlist: &MediaPlaylist) -> bool {
        playlist.segments.iter().any(|s| self.uris.get(&s.sequence).is_some_and(|p| p == s.uri.path()))
    }

    /// Does this playlist offer anything not taken yet: a segment past the
    /// highest one, or another stream altogether? A frozen source, serving
    /// its last playlist forever, does not.
    pub fn offers_news(&self, playlist: &MediaPlaylist) -> bool {
        !playlist.segments.is_empty() && (!self.continues(playlist) || playlist.last_sequence() > self.high)
    }

    /// Give up on everything not yet stored in this epoch: failed fetches,
    /// and with `abandon_in_flight` the fetches still running, become
    /// explicit gaps. Called when an epoch ends and when the recording is
    /// finalized (after its fetches have finished or timed out).
    pub fn close_epoch(&mut self, abandon_in_flight: bool) -> Vec<Step> {
        let mut open = std::mem::take(&mut self.missing);
        if abandon_in_flight {
            for s in std::mem::take(&mut self.inflight) {
                open.insert(s..=s);
            }
        }
        open.iter().map(|run| self.gap(run.clone(), Lost::Unfinished)).collect()
    }

    /// Start the next epoch (the source came back after going offline).
    /// Call [`close_epoch`](Self::close_epoch) first to keep what was lost.
    pub fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.saturating_add(1);
        self.inflight.clear();
        self.missing = RangeInclusiveSet::new();
        self.high = None;
        self.uris.clear();
        self.epoch
    }

    /// Decide what to do with a freshly loaded playlist. `since_last` is the
    /// time since the previous load (None when unknown, e.g. right after a
    /// replacement took over): it bounds how far numbering can plausibly jump.
    pub fn observe(&mut self, playlist: &MediaPlaylist, since_last: Option<Duration>) -> Vec<Step> {
        let mut steps = Vec::new();
        let (Some(first), Some(last)) = (playlist.segments.first(), playlist.segments.last()) else {
            return steps;
        };
        let target = playlist.target_duration.as_secs_f64();
        self.typical_secs = target.max(last.duration);
        if let Some(high) = self.high
            && last.sequence < high
            && !self.continues(playlist)
        {
            self.begin_epoch(EpochReason::Restarted, &mut steps);
        }
        let window_start = first.sequence;
        let plausible = plausible_jump(since_last, target, playlist.segments.len());
        for segment in &playlist.segments {
            if segment.init.is_some() && segment.init != self.init {
                if self.init.is_some() && !self.epoch_is_empty() {
                    self.begin_epoch(EpochReason::InitChanged, &mut steps);
                }
                self.init = segment.init.clone();
            }
            let seq = segment.sequence;
            if self.inflight.contains(&seq) {
                continue;
            }
            if self.high.is_some_and(|h| seq <= h) && !self.missing.contains(&seq) {
                // Stored, recorded as a gap, or a stale copy of what we took.
                continue;
            }
            if let Some(high) = self.high
                && seq > high + 1
            {
                let count = seq - (high + 1);
                if count > plausible {
                    self.begin_epoch(EpochReason::Renumbered { by: count }, &mut steps);
                } else {
                    steps.push(self.gap(high + 1..=seq - 1, Lost::Skipped));
                }
            }
            self.uris.insert(seq, segment.uri.path().to_owned());
            self.high = Some(self.high.map_or(seq, |h| h.max(seq)));
            if self.inflight.len() >= MAX_IN_FLIGHT {
                // Past the cap the segment waits, tracked: a later load
                // hands it out while the window still offers it, and it is
                // a gap if it leaves the window or the recording ends first.
                self.missing.insert(seq..=seq);
                continue;
            }
            self.missing.remove(seq..=seq);
            self.inflight.insert(seq);
            steps.push(Step::Fetch { epoch: self.epoch, segment: Box::new(segment.clone()) });
        }
        // Whatever is still missing below the window is gone for good.
        if window_start > 0 {
            let below = 0..=window_start - 1;
            let lost: Vec<RangeInclusive<u64>> =
                self.missing.overlapping(&below).map(|r| *r.start()..=(*r.end()).min(window_start - 1)).collect();
            self.missing.remove(below);
            steps.extend(lost.into_iter().map(|run| self.gap(run, Lost::LeftWindow)));
        }
        if let Some(h) = self.high {
            self.uris = self.uris.split_off(&h.saturating_sub(URI_MEMORY));
        }
        steps
    }

    /// The segment is in storage and in the ledger (or spooled for upload).
    pub fn stored(&mut self, seq: u64) {
        self.inflight.remove(&seq);
    }

    /// Fetching failed; try again if the source still offers it.
    pub fn released(&mut self, seq: u64) {
        if self.inflight.remove(&seq) {
            self.missing.insert(seq..=seq);
        }
    }

    /// Fetching failed for good (refused, over the cap): the caller records
    /// the gap with its reason, and the segment is never handed out again.
    pub fn lost(&mut self, seq: u64) {
        self.inflight.remove(&seq);
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Segments seen but not handed out (past the in-flight cap) or handed
    /// back after a failed fetch: a load of a playlist that still offers
    /// them hands them out.
    pub fn waiting(&self) -> bool {
        !self.missing.is_empty()
    }

    fn gap(&self, run: RangeInclusive<u64>, lost: Lost) -> Step {
        let count = run.end() - run.start() + 1;
        Step::Gap {
            epoch: self.epoch,
            first_sequence: *run.start(),
            count,
            estimated_secs: count as f64 * self.typical_secs,
            lost,
        }
    }

    fn begin_epoch(&mut self, reason: EpochReason, steps: &mut Vec<Step>) {
        // Fetches still running finish under the old epoch.
        steps.extend(self.close_epoch(false));
        let epoch = self.next_epoch();
        steps.push(Step::NewEpoch { epoch, reason });
    }
}

/// How many sequence numbers a source can have skipped between two loads
/// `since_last` apart: at most one segment per half target duration, plus
/// the window and some slack. Unknown time trusts any jump as a gap.
fn plausible_jump(since_last: Option<Duration>, target_secs: f64, window: usize) -> u64 {
    match since_last {
        None => u64::MAX,
        Some(elapsed) => {
            let per_segment = (target_secs / 2.0).max(0.5);
            (elapsed.as_secs_f64() / per_segment).ceil() as u64 + window as u64 + 16
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    const TICK: Option<Duration> = Some(Duration::from_secs(2));

    fn seg(seq: u64, init: Option<&str>) -> SourceSegment {
        SourceSegment {
            sequence: seq,
            uri: Url::parse(&format!("http://src/seg{seq}.ts")).unwrap(),
            duration: 2.0,
            byte_range: None,
            init: init.map(|u| InitRef { uri: Url::parse(u).unwrap(), byte_range: None }),
            program_date_time: None,
            discontinuity: false,
            is_ad: false,
        }
    }

    fn window(seqs: std::ops::RangeInclusive<u64>) -> MediaPlaylist {
        MediaPlaylist {
            target_duration: Duration::from_secs(2),
            media_sequence: *seqs.start(),
            segments: seqs.map(|s| seg(s, None)).collect(),
            ended: false,
            clamps: Vec::new(),
        }
    }

    fn fetched(steps: &[Step]) -> Vec<u64> {
        steps
            .iter()
            .filter_map(|s| if let Step::Fetch { segment, .. } = s { Some(segment.sequence) } else { None })
            .collect()
    }

    fn store_all(t: &mut Tracker, steps: &[Step]) {
        for s in fetched(steps) {
            t.stored(s);
        }
    }

    fn gap(epoch: u32, first_sequence: u64, count: u64, lost: Lost) -> Step {
        Step::Gap { epoch, first_sequence, count, estimated_secs: count as f64 * 2.0, lost }
    }

    #[test]
    fn takes_the_whole_window_then_only_new_segments() {
        let mut t = Tracker::new();
        let s = t.observe(&window(10..=15), None);
        assert_eq!(fetched(&s), [10, 11, 12, 13, 14, 15]);
        store_all(&mut t, &s);
        assert!(t.observe(&window(10..=15), TICK).is_empty(), "an unchanged playlist fetches nothing");
        assert_eq!(fetched(&t.observe(&window(12..=17), TICK)), [16, 17]);
    }

    #[test]
    fn in_flight_segments_are_not_handed_out_twice() {
        let mut t = Tracker::new();
        assert_eq!(fetched(&t.observe(&window(1..=3), None)).len(), 3);
        assert!(fetched(&t.observe(&window(1..=3), TICK)).is_empty());
        assert_eq!(t.in_flight(), 3);
    }

    #[test]
    fn a_sequence_jump_is_an_explicit_gap() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3), None);
        store_all(&mut t, &s);
        let s = t.observe(&window(8..=10), TICK);
        assert_eq!(s[0], gap(0, 4, 4, Lost::Skipped));
        assert_eq!(fetched(&s), [8, 9, 10]);
    }

    /// Defect: `done.extend(high+1..seq)` allocated one entry per skipped
    /// number, so a packager restarting on epoch-time numbering (about 8.5e8)
    /// got the observer killed for lack of memory, again and again.
    #[test]
    fn a_jump_to_epoch_time_numbering_costs_nothing_and_is_a_new_epoch() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3), None);
        store_all(&mut t, &s);
        let s = t.observe(&window(850_000_000..=850_000_002), TICK);
        assert_eq!(s[0], Step::NewEpoch { epoch: 1, reason: EpochReason::Renumbered { by: 849_999_996 } });
        assert_eq!(fetched(&s), [850_000_000, 850_000_001, 850_000_002]);
        assert!(t.footprint() < 16, "{}", t.footprint());
        // After a long silence the same jump is a gap: one row with its count.
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3), None);
        store_all(&mut t, &s);
        let s = t.observe(&window(850_000_000..=850_000_002), None);
        assert_eq!(s[0], gap(0, 4, 849_999_996, Lost::Skipped));
        assert!(t.footprint() < 16);
    }

    #[test]
    fn a_failed_fetch_is_retried_while_offered_and_a_gap_once_gone() {
        let mut t = Tracker::new();
        let _ = t.observe(&window(1..=3), None);
        t.stored(1);
        t.released(2);
        t.stored(3);
        assert_eq!(fetched(&t.observe(&window(2..=4), TICK)), [2, 4], "2 is offered again");
        t.released(2);
        t.stored(4);
        let s2 = t.observe(&window(3..=5), TICK);
        assert_eq!(fetched(&s2), [5]);
        assert!(s2.contains(&gap(0, 2, 1, Lost::LeftWindow)));
    }

    #[test]
    fn a_segment_lost_for_good_is_never_handed_out_again() {
        let mut t = Tracker::new();
        let _ = t.observe(&window(1..=3), None);
        t.stored(1);
        t.lost(2);
        t.stored(3);
        let s = t.observe(&window(1..=4), TICK);
        assert_eq!(fetched(&s), [4]);
        assert!(!s.iter().any(|x| matches!(x, Step::Gap { .. })), "the caller recorded that gap already");
    }

    #[test]
    fn a_replacement_skips_what_the_ledger_holds_and_fills_holes() {
        // The old cell stored 10..=14 except 12, and crashed.
        let mut t = Tracker::resume(0, Some(14), [12..=12], None);
        let s = t.observe(&window(11..=16), None);
        assert_eq!(fetched(&s), [12, 15, 16]);
        assert!(!s.iter().any(|x| matches!(x, Step::Gap { .. })));
    }

    #[test]
    fn a_replacement_records_what_it_can_no_longer_fetch_as_gaps() {
        let mut t = Tracker::resume(2, Some(14), [12..=12], None);
        let s = t.observe(&window(20..=22), None);
        assert!(s.contains(&gap(2, 15, 5, Lost::Skipped)), "{s:?}");
        assert!(s.contains(&gap(2, 12, 1, Lost::LeftWindow)), "{s:?}");
        assert_eq!(fetched(&s), [20, 21, 22]);
    }

    /// Defect: a stored big gap row was expanded again on resume, one entry
    /// per skipped number.
    #[test]
    fn a_replacement_resumes_after_a_huge_gap_in_constant_memory() {
        let mut t = Tracker::resume(0, Some(900_000_000), [5..=899_999_990], None);
        assert!(t.footprint() < 4);
        let s = t.observe(&window(900_000_001..=900_000_003), None);
        assert_eq!(fetched(&s), [900_000_001, 900_000_002, 900_000_003]);
        assert!(s.contains(&gap(0, 5, 899_999_986, Lost::LeftWindow)), "{s:?}");
        assert!(t.footprint() < 16);
    }

    #[test]
    fn restarted_numbering_starts_a_new_epoch_but_a_stale_copy_does_not() {
        let mut t = Tracker::new();
        let s = t.observe(&window(100..=105), None);
        store_all(&mut t, &s);
        // A CDN serves an older copy: same URIs, lower numbers. Ignored.
        assert!(
            t.observe(&window(98..=103), TICK).iter().all(|s| !matches!(s, Step::NewEpoch { .. } | Step::Fetch { .. }))
        );
        // The encoder restarted: numbers back at 0 with new URIs.
        let mut restarted = window(0..=2);
        for s in &mut restarted.segments {
            s.uri = Url::parse(&format!("http://src/new{}.ts", s.sequence)).unwrap();
        }
        let s = t.observe(&restarted, TICK);
        assert!(matches!(s[0], Step::NewEpoch { epoch: 1, .. }), "{s:?}");
        assert_eq!(fetched(&s), [0, 1, 2]);
    }

    #[test]
    fn an_init_change_starts_a_new_epoch() {
        let mut t = Tracker::new();
        let mut p = window(1..=2);
        for s in &mut p.segments {
            s.init = seg(0, Some("http://src/init-a.mp4")).init;
        }
        let s = t.observe(&p, None);
        store_all(&mut t, &s);
        let mut q = window(3..=4);
        for s in &mut q.segments {
            s.init = seg(0, Some("http://src/init-b.mp4")).init;
        }
        let s = t.observe(&q, TICK);
        assert!(matches!(s[0], Step::NewEpoch { epoch: 1, .. }));
        assert_eq!(fetched(&s), [3, 4]);
        assert_eq!(t.epoch(), 1);
    }

    #[test]
    fn closing_an_epoch_turns_what_is_unresolved_into_gaps() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=5), None);
        t.stored(1);
        t.released(2);
        t.stored(3);
        // 4 and 5 still in flight when the recording ends.
        assert_eq!(fetched(&s).len(), 5);
        let gaps = t.close_epoch(true);
        assert_eq!(gaps, [gap(0, 2, 1, Lost::Unfinished), gap(0, 4, 2, Lost::Unfinished)]);
        assert!(t.close_epoch(true).is_empty());
    }

    #[test]
    fn a_blip_continues_the_epoch_but_a_new_stream_does_not() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=5), None);
        store_all(&mut t, &s);
        assert!(t.continues(&window(4..=8)));
        let mut fresh = window(0..=2);
        for s in &mut fresh.segments {
            s.uri = Url::parse(&format!("http://src/session2/{}.ts", s.sequence)).unwrap();
        }
        assert!(!t.continues(&fresh));
    }

    /// Defect: in standby, a source that kept serving its last playlist
    /// counted as back, which kept the recording open forever.
    #[test]
    fn a_frozen_playlist_offers_no_news() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=5), None);
        store_all(&mut t, &s);
        assert!(!t.offers_news(&window(1..=5)), "the same playlist again");
        assert!(!t.offers_news(&window(3..=5)));
        assert!(t.offers_news(&window(3..=6)), "a new segment");
        let mut fresh = window(0..=2);
        for s in &mut fresh.segments {
            s.uri = Url::parse(&format!("http://src/session2/{}.ts", s.sequence)).unwrap();
        }
        assert!(t.offers_news(&fresh), "another stream");
    }

    #[test]
    fn after_standby_the_next_epoch_takes_the_whole_window() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3), None);
        store_all(&mut t, &s);
        assert_eq!(t.next_epoch(), 1);
        let s = t.observe(&window(10..=12), TICK);
        assert_eq!(fetched(&s), [10, 11, 12]);
        assert!(!s.iter().any(|x| matches!(x, Step::Gap { .. })), "a new epoch has no gap against the old one");
    }

    #[test]
    fn the_backlog_of_fetches_is_bounded() {
        let mut t = Tracker::new();
        let s = t.observe(&window(0..=(MAX_IN_FLIGHT as u64 + 100)), None);
        assert_eq!(fetched(&s).len(), MAX_IN_FLIGHT);
        assert_eq!(t.in_flight(), MAX_IN_FLIGHT);
    }

    /// Issue 24, finding 2: what the cap held back was tracked nowhere, so
    /// a broadcast that ended while the observer was behind lost the tail
    /// of its final playlist without a gap row. It waits now: the next load
    /// of the (frozen) final playlist hands it out, and whatever is still
    /// not stored when the recording ends is a gap.
    #[test]
    fn what_the_cap_holds_back_is_fetched_later_or_becomes_a_gap() {
        let last = MAX_IN_FLIGHT as u64 + 100;
        let final_window = window(0..=last);
        let mut t = Tracker::new();
        let s = t.observe(&final_window, None);
        assert_eq!(fetched(&s).len(), MAX_IN_FLIGHT);
        assert!(t.waiting());
        // Ended here: nothing more is fetched, and the held-back tail is a gap.
        let mut ended = t.clone();
        let gaps: Vec<(u64, u64, Lost)> = ended
            .close_epoch(false)
            .into_iter()
            .filter_map(|s| match s {
                Step::Gap { first_sequence, count, lost, .. } => Some((first_sequence, count, lost)),
                _ => None,
            })
            .collect();
        assert_eq!(gaps, [(MAX_IN_FLIGHT as u64, 101, Lost::Unfinished)]);
        // Or the fetches drain and the same final playlist is loaded again.
        store_all(&mut t, &s);
        let again = t.observe(&final_window, TICK);
        assert_eq!(fetched(&again), (MAX_IN_FLIGHT as u64..=last).collect::<Vec<_>>());
        assert!(!t.waiting());
        store_all(&mut t, &again);
        assert!(t.close_epoch(false).is_empty(), "every segment of the final playlist is stored");
    }
}
