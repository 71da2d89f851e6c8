//! The recorder's bookkeeping, kept pure so every rule can be tested with
//! plain playlists: which segments of a live window to fetch, which sequence
//! numbers are lost for good (explicit gaps), and when the source has started
//! over (a new epoch: an init-section change, or numbering that went back).
//!
//! A sequence is `inflight` from the moment it is handed out until the
//! recorder reports it `stored` or `released` (fetch failed). A released
//! sequence is fetched again if a later playlist still offers it, and becomes
//! a gap once the window has moved past it.

use std::collections::{BTreeMap, BTreeSet};

use crate::hls::{InitRef, MediaPlaylist, SourceSegment};

/// What the recorder should do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new epoch begins (init change, or the source restarted its numbering).
    NewEpoch { epoch: u32, reason: &'static str },
    /// Fetch, store and ledger this segment.
    Fetch { epoch: u32, segment: Box<SourceSegment> },
    /// These sequence numbers are lost; record them as one gap row.
    Gap { epoch: u32, first_sequence: u64, count: u64, estimated_secs: f64 },
}

#[derive(Debug, Clone)]
pub struct Tracker {
    epoch: u32,
    done: BTreeSet<u64>,
    inflight: BTreeSet<u64>,
    missing: BTreeSet<u64>,
    high: Option<u64>,
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
        Self::resume(0, std::iter::empty(), None)
    }

    /// Continue a recording whose ledger already holds `stored` sequences in
    /// `epoch` (a replacement cell). Holes below the highest stored sequence
    /// are fetched if the source still offers them, gaps otherwise.
    pub fn resume(epoch: u32, stored: impl IntoIterator<Item = u64>, init: Option<InitRef>) -> Self {
        let done: BTreeSet<u64> = stored.into_iter().collect();
        let high = done.last().copied();
        let missing = match (done.first(), high) {
            (Some(&lo), Some(hi)) => (lo..hi).filter(|s| !done.contains(s)).collect(),
            _ => BTreeSet::new(),
        };
        Self { epoch, done, inflight: BTreeSet::new(), missing, high, init, uris: BTreeMap::new(), typical_secs: 0.0 }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Nothing has been fetched or handed out in the current epoch.
    pub fn epoch_is_empty(&self) -> bool {
        self.done.is_empty() && self.inflight.is_empty()
    }

    /// Does this playlist continue the current epoch (it offers a segment we
    /// already took, under the same number and URI)? A source that comes back
    /// after a blip does; a restarted stream does not.
    pub fn continues(&self, playlist: &MediaPlaylist) -> bool {
        playlist.segments.iter().any(|s| self.uris.get(&s.sequence).is_some_and(|p| p == s.uri.path()))
    }

    /// Give up on everything not yet stored in this epoch: failed fetches,
    /// and with `abandon_in_flight` the fetches still running, become
    /// explicit gaps. Called when an epoch ends and when the recording is
    /// finalized (after its fetches have finished or timed out).
    pub fn close_epoch(&mut self, abandon_in_flight: bool) -> Vec<Step> {
        let in_flight = if abandon_in_flight { self.inflight.clone() } else { BTreeSet::new() };
        let open: Vec<u64> =
            self.missing.iter().chain(in_flight.iter()).copied().collect::<BTreeSet<_>>().into_iter().collect();
        let steps = runs(&open)
            .into_iter()
            .map(|(first, count)| Step::Gap {
                epoch: self.epoch,
                first_sequence: first,
                count,
                estimated_secs: count as f64 * self.typical_secs,
            })
            .collect();
        self.done.extend(open);
        self.missing.clear();
        self.inflight.clear();
        steps
    }

    /// Start the next epoch (the source came back after going offline).
    /// Call [`close_epoch`](Self::close_epoch) first to keep what was lost.
    pub fn next_epoch(&mut self) -> u32 {
        self.epoch += 1;
        self.done.clear();
        self.inflight.clear();
        self.missing.clear();
        self.high = None;
        self.uris.clear();
        self.epoch
    }

    /// Decide what to do with a freshly loaded playlist.
    pub fn observe(&mut self, playlist: &MediaPlaylist) -> Vec<Step> {
        let mut steps = Vec::new();
        let (Some(first), Some(last)) = (playlist.segments.first(), playlist.segments.last()) else {
            return steps;
        };
        self.typical_secs = playlist.target_duration.as_secs_f64().max(last.duration);
        if let Some(high) = self.high
            && last.sequence < high
            && self.restarted(playlist)
        {
            self.begin_epoch("the source restarted its media sequence", &mut steps);
        }
        let window_start = first.sequence;
        for segment in &playlist.segments {
            if segment.init.is_some() && segment.init != self.init {
                if self.init.is_some() && !self.epoch_is_empty() {
                    self.begin_epoch("the source changed its init section", &mut steps);
                }
                self.init = segment.init.clone();
            }
            let seq = segment.sequence;
            if self.done.contains(&seq) || self.inflight.contains(&seq) {
                continue;
            }
            if let Some(high) = self.high
                && seq > high + 1
            {
                let first_missing = high + 1;
                let count = seq - first_missing;
                steps.push(Step::Gap {
                    epoch: self.epoch,
                    first_sequence: first_missing,
                    count,
                    estimated_secs: count as f64 * self.typical_secs,
                });
                self.done.extend(first_missing..seq);
            }
            if self.high.is_some_and(|h| seq <= h) && !self.missing.contains(&seq) {
                // Below what we have seen and not known missing: a stale copy.
                continue;
            }
            self.missing.remove(&seq);
            self.inflight.insert(seq);
            self.uris.insert(seq, segment.uri.path().to_owned());
            self.high = Some(self.high.map_or(seq, |h| h.max(seq)));
            steps.push(Step::Fetch { epoch: self.epoch, segment: Box::new(segment.clone()) });
        }
        // Whatever is still missing below the window is gone for good.
        let lost: Vec<u64> = self.missing.iter().copied().filter(|s| *s < window_start).collect();
        for run in runs(&lost) {
            steps.push(Step::Gap {
                epoch: self.epoch,
                first_sequence: run.0,
                count: run.1,
                estimated_secs: run.1 as f64 * self.typical_secs,
            });
        }
        for s in lost {
            self.missing.remove(&s);
            self.done.insert(s);
        }
        if let Some(h) = self.high {
            self.uris = self.uris.split_off(&h.saturating_sub(2048));
        }
        steps
    }

    /// The segment is in storage and in the ledger (or spooled for upload).
    pub fn stored(&mut self, seq: u64) {
        self.inflight.remove(&seq);
        self.done.insert(seq);
    }

    /// Fetching failed; try again if the source still offers it.
    pub fn released(&mut self, seq: u64) {
        if self.inflight.remove(&seq) {
            self.missing.insert(seq);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn restarted(&self, playlist: &MediaPlaylist) -> bool {
        // A stale copy repeats URIs we already fetched under the same numbers.
        !playlist.segments.iter().any(|s| self.uris.get(&s.sequence).is_some_and(|p| p == s.uri.path()))
    }

    fn begin_epoch(&mut self, reason: &'static str, steps: &mut Vec<Step>) {
        // Fetches still running finish under the old epoch.
        steps.extend(self.close_epoch(false));
        let epoch = self.next_epoch();
        steps.push(Step::NewEpoch { epoch, reason });
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

/// Consecutive runs in a sorted list, as (first, count).
fn runs(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in sorted {
        match out.last_mut() {
            Some((first, count)) if *first + *count == s => *count += 1,
            _ => out.push((s, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use url::Url;

    use super::*;

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

    #[test]
    fn takes_the_whole_window_then_only_new_segments() {
        let mut t = Tracker::new();
        let s = t.observe(&window(10..=15));
        assert_eq!(fetched(&s), [10, 11, 12, 13, 14, 15]);
        store_all(&mut t, &s);
        assert!(t.observe(&window(10..=15)).is_empty(), "an unchanged playlist fetches nothing");
        assert_eq!(fetched(&t.observe(&window(12..=17))), [16, 17]);
    }

    #[test]
    fn in_flight_segments_are_not_handed_out_twice() {
        let mut t = Tracker::new();
        assert_eq!(fetched(&t.observe(&window(1..=3))).len(), 3);
        assert!(fetched(&t.observe(&window(1..=3))).is_empty());
        assert_eq!(t.in_flight(), 3);
    }

    #[test]
    fn a_sequence_jump_is_an_explicit_gap() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3));
        store_all(&mut t, &s);
        let s = t.observe(&window(8..=10));
        assert_eq!(s[0], Step::Gap { epoch: 0, first_sequence: 4, count: 4, estimated_secs: 8.0 });
        assert_eq!(fetched(&s), [8, 9, 10]);
    }

    #[test]
    fn a_failed_fetch_is_retried_while_offered_and_a_gap_once_gone() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3));
        t.stored(1);
        t.released(2);
        t.stored(3);
        assert_eq!(fetched(&t.observe(&window(2..=4))), [2, 4], "2 is offered again");
        t.released(2);
        t.stored(4);
        let s2 = t.observe(&window(3..=5));
        assert_eq!(fetched(&s2), [5]);
        assert!(s2.contains(&Step::Gap { epoch: 0, first_sequence: 2, count: 1, estimated_secs: 2.0 }));
        drop(s);
    }

    #[test]
    fn a_replacement_skips_what_the_ledger_holds_and_fills_holes() {
        // The old cell stored 10..=14 except 12, and crashed.
        let mut t = Tracker::resume(0, [10, 11, 13, 14], None);
        let s = t.observe(&window(11..=16));
        assert_eq!(fetched(&s), [12, 15, 16]);
        assert!(!s.iter().any(|x| matches!(x, Step::Gap { .. })));
    }

    #[test]
    fn a_replacement_records_what_it_can_no_longer_fetch_as_gaps() {
        let mut t = Tracker::resume(2, [10, 11, 13, 14], None);
        let s = t.observe(&window(20..=22));
        assert!(s.contains(&Step::Gap { epoch: 2, first_sequence: 15, count: 5, estimated_secs: 10.0 }));
        assert!(s.contains(&Step::Gap { epoch: 2, first_sequence: 12, count: 1, estimated_secs: 2.0 }));
        assert_eq!(fetched(&s), [20, 21, 22]);
    }

    #[test]
    fn restarted_numbering_starts_a_new_epoch_but_a_stale_copy_does_not() {
        let mut t = Tracker::new();
        let s = t.observe(&window(100..=105));
        store_all(&mut t, &s);
        // A CDN serves an older copy: same URIs, lower numbers. Ignored.
        assert!(t.observe(&window(98..=103)).iter().all(|s| !matches!(s, Step::NewEpoch { .. } | Step::Fetch { .. })));
        // The encoder restarted: numbers back at 0 with new URIs.
        let mut restarted = window(0..=2);
        for s in &mut restarted.segments {
            s.uri = Url::parse(&format!("http://src/new{}.ts", s.sequence)).unwrap();
        }
        let s = t.observe(&restarted);
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
        let s = t.observe(&p);
        store_all(&mut t, &s);
        let mut q = window(3..=4);
        for s in &mut q.segments {
            s.init = seg(0, Some("http://src/init-b.mp4")).init;
        }
        let s = t.observe(&q);
        assert!(matches!(s[0], Step::NewEpoch { epoch: 1, .. }));
        assert_eq!(fetched(&s), [3, 4]);
        assert_eq!(t.epoch(), 1);
    }

    #[test]
    fn closing_an_epoch_turns_what_is_unresolved_into_gaps() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=5));
        t.stored(1);
        t.released(2);
        t.stored(3);
        // 4 and 5 still in flight when the recording ends.
        assert_eq!(fetched(&s).len(), 5);
        let gaps = t.close_epoch(true);
        assert_eq!(
            gaps,
            [
                Step::Gap { epoch: 0, first_sequence: 2, count: 1, estimated_secs: 2.0 },
                Step::Gap { epoch: 0, first_sequence: 4, count: 2, estimated_secs: 4.0 }
            ]
        );
        assert!(t.close_epoch(true).is_empty());
    }

    #[test]
    fn a_blip_continues_the_epoch_but_a_new_stream_does_not() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=5));
        store_all(&mut t, &s);
        assert!(t.continues(&window(4..=8)));
        let mut fresh = window(0..=2);
        for s in &mut fresh.segments {
            s.uri = Url::parse(&format!("http://src/session2/{}.ts", s.sequence)).unwrap();
        }
        assert!(!t.continues(&fresh));
    }

    #[test]
    fn after_standby_the_next_epoch_takes_the_whole_window() {
        let mut t = Tracker::new();
        let s = t.observe(&window(1..=3));
        store_all(&mut t, &s);
        assert_eq!(t.next_epoch(), 1);
        let s = t.observe(&window(10..=12));
        assert_eq!(fetched(&s), [10, 11, 12]);
        assert!(!s.iter().any(|x| matches!(x, Step::Gap { .. })), "a new epoch has no gap against the old one");
    }
}
