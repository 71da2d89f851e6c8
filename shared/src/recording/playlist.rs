//! Rendering a recording's playlist from its ledger rows. Pure.
//!
//! URIs are relative to the playlist, which sits at the recording's prefix.
//! A discontinuity is marked where the source marked one, where a new epoch
//! begins, and after every gap: nothing is silently concatenated.

use std::fmt::Write;

use super::LedgerRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// While recording: `EXT-X-PLAYLIST-TYPE:EVENT`, no end tag.
    Event,
    /// Finalized: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
    Vod,
}

/// Render `rows` (sorted by epoch, sequence) as an HLS media playlist whose
/// URIs are relative to `prefix`.
pub fn render(rows: &[LedgerRow], prefix: &str, kind: PlaylistKind) -> String {
    let relative = |key: &str| key.strip_prefix(prefix).map(|k| k.trim_start_matches('/')).unwrap_or(key).to_owned();
    let media: Vec<&LedgerRow> = rows.iter().filter(|r| !r.is_gap).collect();
    let target = media.iter().map(|r| r.duration_secs.ceil() as u64).max().unwrap_or(1).max(1);
    let fmp4 = media.iter().any(|r| r.init_key.is_some());
    let mut out = String::with_capacity(64 + rows.len() * 48);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{}", if fmp4 { 7 } else { 3 });
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    out.push_str(match kind {
        PlaylistKind::Event => "#EXT-X-PLAYLIST-TYPE:EVENT\n",
        PlaylistKind::Vod => "#EXT-X-PLAYLIST-TYPE:VOD\n",
    });
    let mut previous_epoch: Option<i32> = None;
    let mut after_gap = false;
    let mut current_init: Option<&str> = None;
    for row in rows {
        if row.is_gap {
            after_gap = true;
            let _ = writeln!(
                out,
                "## gap: {} segment(s) missing from sequence {}, about {:.1}s",
                row.gap_count, row.media_sequence, row.duration_secs
            );
            continue;
        }
        let new_epoch = previous_epoch.is_some_and(|e| e != row.epoch);
        if previous_epoch.is_some() && (row.discontinuity || new_epoch || after_gap) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(init) = row.init_key.as_deref()
            && (current_init != Some(init) || new_epoch)
        {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", relative(init));
            current_init = Some(init);
        }
        if let Some(pdt) = row.program_date_time {
            let _ =
                writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", pdt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", row.duration_secs);
        let _ = writeln!(out, "{}", relative(row.object_key.as_deref().unwrap_or_default()));
        previous_epoch = Some(row.epoch);
        after_gap = false;
    }
    if kind == PlaylistKind::Vod {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::MediaSource;

    fn row(epoch: i32, seq: i64) -> LedgerRow {
        LedgerRow {
            epoch,
            media_sequence: seq,
            duration_secs: 2.0,
            bytes: 100,
            object_key: Some(format!("channels/a/1/e{epoch}/{seq:08}.ts")),
            init_key: None,
            program_date_time: None,
            source: MediaSource::Live,
            is_gap: false,
            gap_count: 0,
            is_ad: false,
            discontinuity: false,
        }
    }

    #[test]
    fn vod_playlist_marks_epochs_and_gaps_and_ends() {
        let rows = vec![row(0, 1), row(0, 2), LedgerRow::gap(0, 3, 2, 4.0, MediaSource::Live), row(0, 5), row(1, 0)];
        let text = render(&rows, "channels/a/1", PlaylistKind::Vod);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXTINF:2.000,\ne0/00000001.ts\n"));
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
}
