//! Pure playlist parsing and variant choice.

use std::time::Duration;

use chrono::Utc;
use m3u8_rs::Playlist;
use url::Url;

use super::{ByteRange, InitRef, MediaPlaylist, SourceSegment};

/// What a fetched playlist turned out to be.
#[derive(Debug, Clone)]
pub enum Parsed {
    Master(Vec<Variant>),
    Media(MediaPlaylist),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: Url,
    pub bandwidth: u64,
    pub height: Option<u64>,
}

/// Which variant of a master playlist to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantChoice {
    Best,
    Worst,
    /// The highest-bandwidth variant at this height, e.g. `720p`.
    Height(u64),
}

impl std::str::FromStr for VariantChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "best" => Ok(VariantChoice::Best),
            "worst" => Ok(VariantChoice::Worst),
            other => other
                .strip_suffix('p')
                .and_then(|h| h.parse().ok())
                .map(VariantChoice::Height)
                .ok_or_else(|| format!("'{s}' is not a variant; use best, worst or a height like 720p")),
        }
    }
}

/// Parse a playlist fetched from `base`. Relative URIs resolve against it.
pub fn parse_playlist(bytes: &[u8], base: &Url) -> Result<Parsed, String> {
    if !bytes.starts_with(b"#EXTM3U") {
        return Err("not an m3u8 playlist (no #EXTM3U header)".into());
    }
    match m3u8_rs::parse_playlist_res(bytes) {
        Ok(Playlist::MasterPlaylist(master)) => {
            let variants = master
                .variants
                .iter()
                .filter(|v| !v.is_i_frame)
                .filter_map(|v| {
                    Some(Variant {
                        uri: base.join(&v.uri).ok()?,
                        bandwidth: v.bandwidth,
                        height: v.resolution.map(|r| r.height),
                    })
                })
                .collect::<Vec<_>>();
            if variants.is_empty() {
                return Err("master playlist lists no variants".into());
            }
            Ok(Parsed::Master(variants))
        }
        Ok(Playlist::MediaPlaylist(_)) => parse_media(bytes, base).map(Parsed::Media),
        Err(e) => Err(format!("malformed playlist: {e:?}").chars().take(200).collect()),
    }
}

/// Parse a media playlist, carrying `EXT-X-MAP`, byte-range offsets and
/// program date-times forward across segments as RFC 8216 says they apply.
pub fn parse_media(bytes: &[u8], base: &Url) -> Result<MediaPlaylist, String> {
    let mut playlist = m3u8_rs::parse_media_playlist_res(bytes)
        .map_err(|e| format!("malformed media playlist: {e:?}").chars().take(200).collect::<String>())?;
    if !bytes.ends_with(b"\n") && !bytes.ends_with(b"\r") {
        // A response cut short mid-line: its last URI may be a prefix of the
        // real one ("seg/1" for "seg/12.ts") and name another segment. Drop
        // it; the next reload offers it whole.
        playlist.segments.pop();
        playlist.end_list = false;
    }
    let mut init: Option<InitRef> = None;
    let mut next_offset: std::collections::HashMap<Url, u64> = Default::default();
    let mut pdt: Option<chrono::DateTime<Utc>> = None;
    let mut segments = Vec::with_capacity(playlist.segments.len());
    let mut in_ad = false;
    for (i, seg) in playlist.segments.iter().enumerate() {
        let uri = base.join(&seg.uri).map_err(|e| format!("segment URI '{}' is not valid: {e}", seg.uri))?;
        if let Some(map) = &seg.map {
            let map_uri = base.join(&map.uri).map_err(|e| format!("EXT-X-MAP URI '{}' is not valid: {e}", map.uri))?;
            let byte_range =
                map.byte_range.as_ref().map(|r| ByteRange { offset: r.offset.unwrap_or(0), length: r.length });
            init = Some(InitRef { uri: map_uri, byte_range });
        }
        let byte_range = seg.byte_range.as_ref().map(|r| {
            let offset = r.offset.unwrap_or_else(|| next_offset.get(&uri).copied().unwrap_or(0));
            ByteRange { offset, length: r.length }
        });
        if let Some(r) = byte_range {
            next_offset.insert(uri.clone(), r.offset + r.length);
        }
        pdt = match seg.program_date_time {
            Some(t) => Some(t.with_timezone(&Utc)),
            None => pdt,
        };
        for tag in &seg.unknown_tags {
            match tag.tag.as_str() {
                "X-CUE-OUT" | "X-CUE-OUT-CONT" => in_ad = true,
                "X-CUE-IN" => in_ad = false,
                _ => {}
            }
        }
        let daterange_ad = seg.daterange.as_ref().and_then(|d| d.class.as_deref()).is_some_and(|c| c.contains("ad"));
        let title_ad = seg.title.as_deref().is_some_and(|t| t.contains("Amazon"));
        segments.push(SourceSegment {
            sequence: playlist.media_sequence + i as u64,
            uri,
            duration: f64::from(seg.duration).max(0.0),
            byte_range,
            init: init.clone(),
            program_date_time: pdt,
            discontinuity: seg.discontinuity,
            is_ad: in_ad || daterange_ad || title_ad,
        });
        if let Some(t) = pdt.as_mut() {
            *t += chrono::Duration::milliseconds((f64::from(seg.duration) * 1000.0) as i64);
        }
    }
    Ok(MediaPlaylist {
        target_duration: Duration::from_secs(playlist.target_duration.max(1)),
        media_sequence: playlist.media_sequence,
        segments,
        ended: playlist.end_list,
    })
}

/// Choose a variant. `Height` falls back to the best below it, then the
/// worst above it.
pub fn pick_variant<'a>(variants: &'a [super::parse::Variant], choice: &VariantChoice) -> Option<&'a Variant> {
    match choice {
        VariantChoice::Best => variants.iter().max_by_key(|v| (v.height.unwrap_or(0), v.bandwidth)),
        VariantChoice::Worst => variants.iter().min_by_key(|v| (v.height.unwrap_or(0), v.bandwidth)),
        VariantChoice::Height(h) => variants
            .iter()
            .filter(|v| v.height.is_some_and(|vh| vh <= *h))
            .max_by_key(|v| (v.height, v.bandwidth))
            .or_else(|| variants.iter().min_by_key(|v| (v.height.unwrap_or(u64::MAX), v.bandwidth))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://cdn.example/live/chan/index.m3u8?token=abc").unwrap()
    }

    #[test]
    fn media_playlist_resolves_uris_maps_ranges_and_dates() {
        let text = b"#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-MAP:URI=\"init.mp4?v=1\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00.000Z
#EXTINF:2.000,
seg41.m4s?sig=x
#EXT-X-BYTERANGE:1000@0
#EXTINF:2.000,
https://other.example/big.m4s
#EXT-X-BYTERANGE:500
#EXTINF:1.500,
https://other.example/big.m4s
#EXT-X-DISCONTINUITY
#EXTINF:2.000,Amazon|ad
/abs/seg44.m4s
#EXT-X-ENDLIST
";
        let p = parse_media(text, &base()).unwrap();
        assert!(p.ended);
        assert_eq!(p.target_duration, Duration::from_secs(2));
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(seqs, [41, 42, 43, 44]);
        assert_eq!(p.segments[0].uri.as_str(), "http://cdn.example/live/chan/seg41.m4s?sig=x");
        assert_eq!(p.segments[3].uri.as_str(), "http://cdn.example/abs/seg44.m4s");
        let init = p.segments[3].init.as_ref().unwrap();
        assert_eq!(init.uri.as_str(), "http://cdn.example/live/chan/init.mp4?v=1");
        assert_eq!(p.segments[1].byte_range, Some(ByteRange { offset: 0, length: 1000 }));
        assert_eq!(p.segments[2].byte_range, Some(ByteRange { offset: 1000, length: 500 }));
        assert_eq!(p.segments[2].byte_range.unwrap().header(), "bytes=1000-1499");
        assert!(p.segments[3].discontinuity && p.segments[3].is_ad && !p.segments[0].is_ad);
        let t0 = p.segments[0].program_date_time.unwrap();
        assert_eq!((p.segments[2].program_date_time.unwrap() - t0).num_milliseconds(), 4000);
        assert_eq!(p.segments[0].extension(), "m4s");
    }

    #[test]
    fn master_playlist_picks_variants() {
        let text = b"#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080
high/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720
mid/index.m3u8
";
        let Parsed::Master(v) = parse_playlist(text, &base()).unwrap() else { panic!("not master") };
        assert_eq!(pick_variant(&v, &VariantChoice::Best).unwrap().uri.path(), "/live/chan/high/index.m3u8");
        assert_eq!(pick_variant(&v, &VariantChoice::Worst).unwrap().height, Some(360));
        assert_eq!(pick_variant(&v, &"720p".parse().unwrap()).unwrap().height, Some(720));
        assert_eq!(pick_variant(&v, &"900p".parse().unwrap()).unwrap().height, Some(720));
        assert_eq!(pick_variant(&v, &"144p".parse().unwrap()).unwrap().height, Some(360));
        assert!("fast".parse::<VariantChoice>().is_err());
    }

    #[test]
    fn a_playlist_cut_short_does_not_offer_its_last_line() {
        let text =
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n#EXTINF:2.0,\nseg/10.ts\n#EXTINF:2.0,\nseg/1";
        let p = parse_media(text, &base()).unwrap();
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].uri.path(), "/live/chan/seg/10.ts");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"<html>404</html>",
            b"#EXTM3U\n#EXTINF:abc\n",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n",
        ] {
            let _ = parse_playlist(bad, &base());
        }
        assert!(parse_playlist(b"<html>", &base()).is_err());
    }
}
