//! Rendering a recording's playlists from its ledger rows. Pure.
//!
//! URIs are relative to the playlist, which sits at the recording's prefix.
//! A discontinuity is marked where the source marked one, where a new epoch
//! begins, and after every gap: nothing is silently concatenated.
//!
//! Three shapes, with one renderer that takes rows one at a time, so no
//! playlist needs the whole ledger in memory:
//! - the VOD playlist, written once when a recording is finalized, streamed
//!   from the ledger however long the recording is;
//! - while live, the last [`LiveWindow`] rows: an EVENT playlist as long as
//!   it still starts at the recording's first segment, then a sliding live
//!   playlist (`EXT-X-MEDIA-SEQUENCE` and `EXT-X-DISCONTINUITY-SEQUENCE`
//!   counting what slid out). Rewriting it costs the same at hour 1 and at
//!   day 7.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::LedgerRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// While recording, from the first segment: `EXT-X-PLAYLIST-TYPE:EVENT`, no end tag.
    Event,
    /// While recording, once the recording outgrew the live window: a sliding
    /// window with no playlist type.
    Live,
    /// Finalized: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
    Vod,
}

/// What goes above the first segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub kind: PlaylistKind,
    /// The longest segment, in seconds (rounded up, at least 1).
    pub target_secs: u64,
    /// Any segment has an init section (fMP4): version 7.
    pub fmp4: bool,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
}

impl Header {
    /// The header for these rows.
    pub fn of<'a>(kind: PlaylistKind, rows: impl IntoIterator<Item = &'a LedgerRow>) -> Self {
        let mut h = Header { kind, target_secs: 1, fmp4: false, media_sequence: 0, discontinuity_sequence: 0 };
        for r in rows.into_iter().filter(|r| !r.is_gap) {
            h.include(r);
        }
        h
    }

    fn include(&mut self, row: &LedgerRow) {
        self.target_secs = self.target_secs.max(target_secs(row.duration_secs));
        self.fmp4 |= row.init_key.is_some();
    }

    pub fn write(&self, out: &mut String) {
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", if self.fmp4 { 7 } else { 3 });
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_secs);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        match self.kind {
            PlaylistKind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            PlaylistKind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            PlaylistKind::Live => {}
        }
    }
}

/// `EXT-X-TARGETDURATION` for a segment: its duration rounded up, at least 1.
pub fn target_secs(duration_secs: f64) -> u64 {
    if duration_secs.is_finite() { (duration_secs.ceil() as u64).max(1) } else { 1 }
}

/// Where the renderer stands between two rows: what decides whether the
/// next segment opens with a discontinuity and needs its init section named.
#[derive(Debug, Clone, Default)]
pub struct Continuity {
    previous_epoch: Option<i32>,
    after_gap: bool,
    current_init: Option<String>,
    /// Whether the last segment written was an ad: a switch between ads and
    /// the programme is a discontinuity.
    previous_ad: bool,
    /// Leave ad segments out (a VOD playlist, unless `--keep-ads`), and what
    /// was left out since the last segment written: count and seconds.
    skip_ads: bool,
    skipped: (u64, f64),
}

impl Continuity {
    /// A renderer that leaves ad segments out, with a discontinuity and a
    /// comment where an ad break was.
    pub fn without_ads() -> Self {
        Self { skip_ads: true, ..Self::default() }
    }

    /// Would `row` (a segment) open with `EXT-X-DISCONTINUITY` after what came before?
    pub fn breaks_before(&self, row: &LedgerRow) -> bool {
        let new_epoch = self.previous_epoch.is_some_and(|e| e != row.epoch);
        self.previous_epoch.is_some()
            && (row.discontinuity || new_epoch || self.after_gap || self.previous_ad != row.is_ad)
    }

    /// Move past `row` without writing it.
    pub fn pass(&mut self, row: &LedgerRow) {
        if row.is_gap {
            self.after_gap = true;
        } else {
            self.previous_epoch = Some(row.epoch);
            self.after_gap = false;
            self.current_init = row.init_key.clone();
            self.previous_ad = row.is_ad;
        }
    }

    /// Write `row` after what came before. `uri` maps an object key to the
    /// URI the playlist names; `tag_break` false leaves out a discontinuity
    /// tag that the caller counts in `EXT-X-DISCONTINUITY-SEQUENCE` instead.
    pub fn write(&mut self, out: &mut String, row: &LedgerRow, uri: &dyn Fn(&str) -> String, tag_break: bool) {
        if row.is_gap {
            let _ = writeln!(
                out,
                "## gap: {} segment(s) missing from sequence {}, about {:.1}s{}",
                row.gap_count,
                row.media_sequence,
                row.duration_secs,
                row.gap_reason.as_deref().map(|r| format!(": {}", one_line(r))).unwrap_or_default()
            );
            self.pass(row);
            return;
        }
        if row.is_ad && self.skip_ads {
            // What follows the break starts a new discontinuity.
            self.skipped = (self.skipped.0 + 1, self.skipped.1 + row.duration_secs);
            self.after_gap = true;
            return;
        }
        if self.skipped.0 > 0 {
            let (n, secs) = std::mem::take(&mut self.skipped);
            let _ = writeln!(out, "## ad break left out: {n} segment(s), about {secs:.1}s (--keep-ads keeps them)");
        }
        let new_epoch = self.previous_epoch.is_some_and(|e| e != row.epoch);
        if tag_break && self.breaks_before(row) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(init) = row.init_key.as_deref()
            && (self.current_init.as_deref() != Some(init) || new_epoch)
        {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", uri(init));
        }
        if let Some(pdt) = row.program_date_time {
            let _ =
                writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", pdt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", row.duration_secs);
        let _ = writeln!(out, "{}", uri(row.object_key.as_deref().unwrap_or_default()));
        self.pass(row);
    }

    /// Forget which init section was named, so the next segment names its own
    /// (the first segment of a playlist always does).
    pub fn forget_init(&mut self) {
        self.current_init = None;
    }
}

/// A gap reason on one comment line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect()
}

/// Object keys relative to `prefix`, the directory the playlist sits in.
pub fn relative_to(prefix: &str) -> impl Fn(&str) -> String + '_ {
    move |key: &str| key.strip_prefix(prefix).map(|k| k.trim_start_matches('/')).unwrap_or(key).to_owned()
}

/// Render `rows` (sorted by epoch, sequence) as an HLS media playlist whose
/// URIs are relative to `prefix`.
pub fn render(rows: &[LedgerRow], prefix: &str, kind: PlaylistKind) -> String {
    render_with(rows, kind, &relative_to(prefix))
}

/// Render `rows` naming each object by `uri(key)`.
pub fn render_with(rows: &[LedgerRow], kind: PlaylistKind, uri: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 48);
    Header::of(kind, rows).write(&mut out);
    let mut state = Continuity::default();
    for row in rows {
        state.write(&mut out, row, uri, true);
    }
    if kind == PlaylistKind::Vod {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The last `capacity` ledger rows of a recording that is still being
/// recorded, and what slid out before them.
#[derive(Debug, Clone)]
pub struct LiveWindow {
    capacity: usize,
    rows: BTreeMap<(i32, i64), LedgerRow>,
    /// Segments that slid out (the next `EXT-X-MEDIA-SEQUENCE`).
    slid_segments: u64,
    /// Discontinuities among what slid out.
    slid_breaks: u64,
    /// Rows of any kind that slid out: the playlist is no longer an EVENT.
    slid_rows: u64,
    /// The renderer's state after the last row that slid out.
    slid_state: Continuity,
}

impl LiveWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: BTreeMap::new(),
            slid_segments: 0,
            slid_breaks: 0,
            slid_rows: 0,
            slid_state: Continuity::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Add a row. A row older than everything kept in a full window (a late
    /// gap, a segment of an earlier epoch finishing late) is left out of the
    /// live playlist; the ledger and the VOD playlist have it.
    pub fn insert(&mut self, row: LedgerRow) {
        let key = (row.epoch, row.media_sequence);
        if self.slid_rows > 0 && self.rows.first_key_value().is_some_and(|(first, _)| key < *first) {
            return;
        }
        self.rows.insert(key, row);
        while self.rows.len() > self.capacity {
            let Some((_, old)) = self.rows.pop_first() else { break };
            if !old.is_gap {
                if self.slid_state.breaks_before(&old) {
                    self.slid_breaks += 1;
                }
                self.slid_segments += 1;
            }
            self.slid_rows += 1;
            self.slid_state.pass(&old);
        }
    }

    /// The live playlist, URIs relative to `prefix`.
    pub fn render(&self, prefix: &str) -> String {
        let uri = relative_to(prefix);
        let kind = if self.slid_rows == 0 { PlaylistKind::Event } else { PlaylistKind::Live };
        let mut header = Header::of(kind, self.rows.values());
        header.media_sequence = self.slid_segments;
        let mut state = self.slid_state.clone();
        state.forget_init();
        // A break into the first segment is counted, not tagged: nothing is before it.
        let mut ahead = state.clone();
        let mut break_into_first = false;
        for row in self.rows.values() {
            if !row.is_gap {
                break_into_first = ahead.breaks_before(row);
                break;
            }
            ahead.pass(row);
        }
        header.discontinuity_sequence = self.slid_breaks + u64::from(break_into_first);
        let mut out = String::with_capacity(128 + self.rows.len() * 96);
        header.write(&mut out);
        let mut first = true;
        for row in self.rows.values() {
            state.write(&mut out, row, &uri, !first || row.is_gap);
            first &= row.is_gap;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::MediaSource;

    fn row(epoch: i32, seq: i64) -> LedgerRow {
        let key = crate::storage::ObjectKey::parse(&format!("channels/a/1/e{epoch}/{seq:08}.ts")).unwrap();
        LedgerRow::object(epoch as u32, seq as u64, 2.0, &key, None, 100, MediaSource::Live)
    }

    /// Twitch's stitched ads: a VOD playlist leaves them out by default,
    /// with a discontinuity where the break was; kept, they stand between
    /// discontinuities of their own.
    #[test]
    fn ad_breaks_are_left_out_of_a_vod_or_kept_between_discontinuities() {
        let ad = |seq| LedgerRow { is_ad: true, ..row(0, seq) };
        let rows = [row(0, 1), ad(2), ad(3), row(0, 4), row(0, 5)];
        let render = |mut state: Continuity| {
            let mut out = String::new();
            for r in &rows {
                state.write(&mut out, r, &|k| k.to_owned(), true);
            }
            out
        };
        let without = render(Continuity::without_ads());
        assert!(!without.contains("00000002.ts") && !without.contains("00000003.ts"), "{without}");
        assert!(without.contains("## ad break left out: 2 segment(s), about 4.0s"), "{without}");
        assert_eq!(without.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{without}");
        let pos = |text: &str, what: &str| text.find(what).unwrap();
        assert!(pos(&without, "#EXT-X-DISCONTINUITY") < pos(&without, "00000004.ts"));
        let kept = render(Continuity::default());
        assert!(kept.contains("00000002.ts") && kept.contains("00000003.ts"));
        assert_eq!(kept.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{kept}");
        assert!(pos(&kept, "00000001.ts") < pos(&kept, "#EXT-X-DISCONTINUITY"));
        assert!(pos(&kept, "#EXT-X-DISCONTINUITY") < pos(&kept, "00000002.ts"));
    }

    #[test]
    fn vod_playlist_marks_epochs_and_gaps_and_ends() {
        let mut g = LedgerRow::gap(0, 3, 2, 4.0, MediaSource::Live);
        g.gap_reason = Some("the source skipped\nthem".into());
        let rows = vec![row(0, 1), row(0, 2), g, row(0, 5), row(1, 0)];
        let text = render(&rows, "channels/a/1", PlaylistKind::Vod);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXTINF:2.000,\ne0/00000001.ts\n"));
        assert!(text.contains("about 4.0s: the source skipped them\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 2, "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(text.contains("PLAYLIST-TYPE:VOD"));
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.segments.len(), 4);
    }

    #[test]
    fn event_playlist_has_no_end_and_fmp4_maps() {
        let mut a = row(0, 1);
        a.init_key = Some("channels/a/1/e0/init-0.mp4".into());
        a.object_key = Some("channels/a/1/e0/00000001.m4s".into());
        let text = render(&[a], "channels/a/1", PlaylistKind::Event);
        assert!(text.contains("#EXT-X-MAP:URI=\"e0/init-0.mp4\"\n"));
        assert!(text.contains("#EXT-X-VERSION:7"));
        assert!(!text.contains("ENDLIST"));
    }

    #[test]
    fn the_live_window_is_an_event_playlist_until_it_slides() {
        let mut w = LiveWindow::new(4);
        for s in 0..3 {
            w.insert(row(0, s));
        }
        let text = w.render("channels/a/1");
        assert!(text.contains("PLAYLIST-TYPE:EVENT") && text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{text}");
        for s in 3..10 {
            w.insert(row(0, s));
        }
        assert_eq!(w.len(), 4);
        let text = w.render("channels/a/1");
        assert!(!text.contains("PLAYLIST-TYPE"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{text}");
        assert!(text.contains("e0/00000006.ts") && !text.contains("e0/00000005.ts"));
        // A late row from before the window is left to the ledger.
        w.insert(row(0, 2));
        assert!(!w.render("channels/a/1").contains("e0/00000002.ts"));
    }

    #[test]
    fn the_live_window_counts_the_discontinuities_that_slid_out() {
        let mut w = LiveWindow::new(3);
        w.insert(row(0, 0));
        w.insert(row(0, 1));
        w.insert(LedgerRow::gap(0, 2, 1, 2.0, MediaSource::Live));
        w.insert(row(0, 3));
        w.insert(row(1, 0));
        w.insert(row(1, 1));
        // Slid out: e0/0, e0/1 and the gap.
        let text = w.render("p");
        // Kept: e0/3 (opens a break after the gap, counted), e1/0 (tagged), e1/1.
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.segments.len(), 3);
    }

    #[test]
    fn rendering_a_window_costs_the_same_however_long_the_recording() {
        let mut w = LiveWindow::new(300);
        for s in 0..300 {
            w.insert(row(0, s));
        }
        let early = w.render("channels/a/1").len();
        for s in 300..300_000 {
            w.insert(row(0, s));
        }
        let late = w.render("channels/a/1").len();
        // Only the digits of MEDIA-SEQUENCE grow.
        assert!(late <= early + 16, "{early} vs {late}");
    }
}
