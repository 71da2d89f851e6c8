//! Writing a recording's VOD playlist from its ledger, however long the
//! recording: the header comes from one aggregate, the rows are streamed
//! from Postgres into a temporary file, and the file goes to storage in
//! parts. Memory stays flat from a one-minute clip to a week of 2-second
//! segments.

use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

use super::playlist::{Continuity, Header, PlaylistKind, relative_to, target_secs};
use super::{Ledger, playlist_key};
use crate::storage::{ObjectKey, ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("reading the ledger failed")]
    Db(#[from] sqlx::Error),
    #[error("writing the playlist to a temporary file failed")]
    Io(#[from] std::io::Error),
    #[error("storing the playlist failed")]
    Storage(#[from] StorageError),
}

/// Storage or Postgres away for a moment is worth another try; storage
/// that refuses for good is not.
impl crate::exit::Classify for PublishError {
    fn class(&self) -> crate::exit::ErrorClass {
        match self {
            PublishError::Storage(e) => e.class(),
            PublishError::Db(_) | PublishError::Io(_) => crate::exit::ErrorClass::Transient,
        }
    }
}

/// What a VOD playlist does with the segments a source marked as ads.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct VodArgs {
    /// Keep ad segments (Twitch's stitched ads) in VOD playlists. By default
    /// they are left out, with a discontinuity where each break was; they are
    /// recorded and ledgered either way.
    #[arg(long = "keep-ads", env = "COLONY_KEEP_ADS")]
    pub keep_ads: bool,
}

/// Render the VOD playlist of `ledger`'s recording to `prefix/playlist.m3u8`.
pub async fn publish_vod(
    ledger: &Ledger,
    store: &dyn ObjectStore,
    prefix: &ObjectKey,
    vod: VodArgs,
) -> Result<(), PublishError> {
    let (longest, fmp4): (Option<f64>, Option<bool>) = sqlx::query_as(
        "SELECT max(duration_secs) FILTER (WHERE NOT is_gap), bool_or(init_key IS NOT NULL)
           FROM segments WHERE recording_id = $1",
    )
    .bind(ledger.recording_id())
    .fetch_one(ledger.pool())
    .await?;
    let header = Header {
        kind: PlaylistKind::Vod,
        target_secs: target_secs(longest.unwrap_or(1.0)),
        fmp4: fmp4.unwrap_or(false),
        media_sequence: 0,
        discontinuity_sequence: 0,
    };
    let mut text = String::with_capacity(64 * 1024);
    header.write(&mut text);
    let file = tempfile::Builder::new().prefix("colony-playlist-").tempfile()?;
    let mut out = tokio::fs::File::from_std(file.reopen()?);
    let uri = relative_to(prefix.as_str());
    let mut state = if vod.keep_ads { Continuity::default() } else { Continuity::without_ads() };
    let mut rows = ledger.stream();
    while let Some(row) = rows.try_next().await? {
        state.write(&mut text, &row, &uri, true);
        if text.len() >= 60 * 1024 {
            out.write_all(text.as_bytes()).await?;
            text.clear();
        }
    }
    text.push_str("#EXT-X-ENDLIST\n");
    out.write_all(text.as_bytes()).await?;
    out.flush().await?;
    drop(out);
    store.put_file(&playlist_key(prefix)?, file.path()).await?;
    Ok(())
}
