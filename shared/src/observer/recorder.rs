//! The recorder loop: reload, fetch, store, ledger; offline, standby, finalize.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use url::Url;

use super::args::ObserverArgs;
use super::spool::Spool;
use super::tracker::{Step, Tracker};
use super::writer::{Message, Writer};
use crate::channel::{self, Channel};
use crate::exit::Exit;
use crate::hls::{HlsClient, HlsError, InitRef, MediaPlaylist, SourceSegment, VariantChoice};
use crate::recording::{self, LedgerError, LedgerRow, MediaSource, PlaylistKind, Progress, RecordingState};
use crate::storage::{ObjectKey, ObjectStore};

/// How the cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The recording was finalized in this state.
    Finalized(RecordingState),
    /// Another cell holds the recording now; nothing more was written.
    Fenced,
    /// The recording was already closed when the cell started.
    AlreadyClosed(RecordingState),
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Fenced => crate::exit::FENCED,
            _ => crate::exit::OK,
        }
    }
}

/// What a fetch task reports back.
enum Done {
    Stored {
        epoch: u32,
        seq: u64,
        row: LedgerRow,
    },
    Spooled {
        epoch: u32,
        seq: u64,
    },
    Failed {
        epoch: u32,
        seq: u64,
        error: String,
    },
    /// A spooled segment reached storage.
    Unspooled {
        row: LedgerRow,
    },
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Live,
    Standby { until: Instant },
}

struct Recorder {
    args: ObserverArgs,
    store: Arc<dyn ObjectStore>,
    hls: HlsClient,
    channel: Channel,
    variant: VariantChoice,
    prefix: ObjectKey,
    tracker: Tracker,
    rows: BTreeMap<(i32, i64), LedgerRow>,
    inits: HashMap<(u32, InitRef), String>,
    db: mpsc::UnboundedSender<Message>,
    done_tx: mpsc::UnboundedSender<Done>,
    fetches: JoinSet<()>,
    permits: Arc<Semaphore>,
    spool: Arc<Spool>,
    media_url: Option<Url>,
    last_body: Bytes,
    last_new_segment: Instant,
    target: Duration,
    dirty: bool,
    last_playlist_write: Instant,
    playlist_write: Option<tokio::task::JoinHandle<()>>,
    state: RecordingState,
}

/// Record until the broadcast ends (and the standby window passes), the
/// cell is told to stop, or it is fenced out.
pub async fn run(
    args: ObserverArgs,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    stop: CancellationToken,
) -> anyhow::Result<Outcome> {
    let row: Option<(i64, RecordingState, i64, i32, String)> =
        sqlx::query_as("SELECT channel_id, state, lease_token, epoch, storage_prefix FROM recordings WHERE id = $1")
            .bind(args.recording_id)
            .fetch_optional(&pool)
            .await
            .context("loading the recording")?;
    let Some((channel_id, state, token, db_epoch, storage_prefix)) = row else {
        return Err(Exit::config(format!("recording {} (OBSERVER_VOD_ID) does not exist", args.recording_id)).into());
    };
    if channel_id != args.channel_id {
        return Err(Exit::config(format!(
            "recording {} belongs to channel {channel_id}, not OBSERVER_CHANNEL_ID {}",
            args.recording_id, args.channel_id
        ))
        .into());
    }
    if token > args.lease_token {
        warn!(current = token, ours = args.lease_token, "recording already handed to another cell");
        return Ok(Outcome::Fenced);
    }
    if token < args.lease_token {
        return Err(
            Exit::config(format!("lease token {} is newer than the recording's {token}", args.lease_token)).into()
        );
    }
    if !state.is_open() {
        info!(?state, "recording already closed; nothing to do");
        return Ok(Outcome::AlreadyClosed(state));
    }
    let channel = channel::get(&pool, channel_id)
        .await
        .context("loading the channel")?
        .ok_or_else(|| Exit::config(format!("channel {channel_id} does not exist")))?;
    let variant = match &args.variant {
        Some(v) => v.clone(),
        None => channel.variant.parse().unwrap_or(VariantChoice::Best),
    };
    sqlx::query(
        "INSERT INTO cells (id, kind, backend, channel_id, recording_id, lease_token, state, last_heartbeat, host, version)
         VALUES ($1, 'observer', 'manual', $2, $3, $4, 'running', now(), $5, $6)
         ON CONFLICT (id) DO UPDATE SET state = 'running', last_heartbeat = now(), host = EXCLUDED.host,
                version = EXCLUDED.version, recording_id = EXCLUDED.recording_id, lease_token = EXCLUDED.lease_token",
    )
    .bind(args.cell_id)
    .bind(channel_id)
    .bind(args.recording_id)
    .bind(args.lease_token)
    .bind(crate::hostname())
    .bind(crate::VERSION)
    .execute(&pool)
    .await
    .context("registering the cell")?;

    let ledger = recording::Ledger::new(pool.clone(), args.recording_id, args.lease_token);
    let existing = ledger.rows().await.context("loading the ledger")?;
    let epoch = existing.iter().map(|r| r.epoch).max().unwrap_or(0).max(db_epoch).max(0) as u32;
    let stored = existing.iter().filter(|r| r.epoch as u32 == epoch).flat_map(|r| {
        let n = if r.is_gap { r.gap_count.max(1) as i64 } else { 1 };
        (r.media_sequence..r.media_sequence + n).map(|s| s as u64)
    });
    let tracker = Tracker::resume(epoch, stored, None);
    if !existing.is_empty() {
        info!(rows = existing.len(), epoch, "continuing a recording another cell started");
    }
    let prefix = ObjectKey::parse(&storage_prefix).context("the recording's storage prefix")?;
    let spool_root = args.spool_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("colony-spool"));
    let spool = Arc::new(Spool::open(&spool_root, args.recording_id, args.spool_max_mib * 1024 * 1024).await?);
    let (db, mut fenced) = Writer::spawn(ledger, args.cell_id);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let uploader_stop = CancellationToken::new();
    tokio::spawn(upload_spooled(spool.clone(), store.clone(), done_tx.clone(), uploader_stop.clone()));

    let mut r = Recorder {
        hls: HlsClient::new(args.fetch_timeout.into()),
        permits: Arc::new(Semaphore::new(args.concurrency.max(1))),
        rows: existing.into_iter().map(|row| ((row.epoch, row.media_sequence), row)).collect(),
        inits: HashMap::new(),
        fetches: JoinSet::new(),
        media_url: None,
        last_body: Bytes::new(),
        last_new_segment: Instant::now(),
        target: Duration::from_secs(2),
        dirty: false,
        last_playlist_write: Instant::now() - Duration::from_secs(60),
        playlist_write: None,
        state: RecordingState::Recording,
        args,
        store,
        channel,
        variant,
        prefix,
        tracker,
        db,
        done_tx,
        spool,
    };
    info!(channel = %r.args.channel_login, name = %r.args.channel_name, recording = r.args.recording_id, "observer started");

    let mut phase = Phase::Live;
    let mut next_reload = Instant::now();
    let mut heartbeat = tokio::time::interval(r.args.heartbeat.into());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            biased;
            _ = fenced.changed() => break Outcome::Fenced,
            _ = stop.cancelled() => {
                info!("stop requested; finalizing as interrupted");
                let deadline = Instant::now() + Duration::from(r.args.shutdown_deadline);
                break r.finalize(RecordingState::Interrupted, deadline, &mut done_rx, &mut fenced).await;
            }
            Some(done) = done_rx.recv() => r.on_done(done),
            _ = heartbeat.tick() => r.heartbeat(),
            _ = tokio::time::sleep_until(next_reload) => {
                let started = Instant::now();
                match phase {
                    Phase::Live => {
                        let (wait, offline) = r.reload().await;
                        next_reload = started + wait;
                        if let Some(reason) = offline {
                            let until = Instant::now() + Duration::from(r.args.standby);
                            info!(%reason, standby = %r.args.standby, "source offline; standing by");
                            r.state = RecordingState::Standby;
                            r.heartbeat();
                            phase = Phase::Standby { until };
                        }
                    }
                    Phase::Standby { until } => {
                        if let Some(playlist) = r.probe().await {
                            if r.tracker.continues(&playlist) {
                                info!(epoch = r.tracker.epoch(), "source is back inside the standby window and continues where it left off");
                            } else {
                                r.close_epoch();
                                let epoch = r.tracker.next_epoch();
                                info!(epoch, "source is back inside the standby window; continuing the recording as a new epoch");
                            }
                            r.state = RecordingState::Recording;
                            r.last_new_segment = Instant::now();
                            r.heartbeat();
                            phase = Phase::Live;
                            next_reload = Instant::now();
                        } else if Instant::now() >= until {
                            info!("standby window passed; finalizing");
                            let deadline = Instant::now() + Duration::from(r.args.finalize_deadline);
                            break r.finalize(RecordingState::Complete, deadline, &mut done_rx, &mut fenced).await;
                        } else {
                            next_reload = started + r.target.max(Duration::from_secs(1)).min(until - Instant::now());
                        }
                    }
                }
            }
        }
        r.maybe_write_playlist(PlaylistKind::Event);
    };
    uploader_stop.cancel();
    if outcome == Outcome::Fenced {
        error!(
            recording = r.args.recording_id,
            "this recording was handed to a replacement cell; exiting without another write"
        );
    }
    Ok(outcome)
}

impl Recorder {
    /// Load the playlist once. Returns how long to wait before the next load
    /// and, if the source is now offline, why.
    async fn reload(&mut self) -> (Duration, Option<String>) {
        let url = match self.media_url.clone() {
            Some(u) => u,
            None => match self.resolve().await {
                Ok(u) => u,
                Err(e) => return (self.target / 2, self.stalled().or(Some(format!("source unavailable: {e:#}")))),
            },
        };
        match self.hls.media_playlist(&url).await {
            Ok((playlist, body)) => {
                let changed = body != self.last_body;
                self.last_body = body;
                self.target = playlist.target_duration;
                let fresh = self.apply(&playlist).await;
                if fresh > 0 {
                    self.last_new_segment = Instant::now();
                }
                if playlist.ended {
                    return (self.target, Some("the playlist carries EXT-X-ENDLIST".into()));
                }
                // RFC 8216 §6.3.4: a changed playlist is reloaded after one
                // target duration, an unchanged one after half of one.
                let wait = if changed { self.target } else { self.target / 2 };
                (wait, self.stalled())
            }
            Err(e) if e.is_gone() => {
                self.media_url = None;
                (self.target, Some(format!("{e}")))
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "playlist reload failed; retrying");
                if matches!(e, HlsError::Malformed { .. }) {
                    self.last_body = Bytes::new();
                }
                (self.target / 2, self.stalled())
            }
        }
    }

    fn stalled(&self) -> Option<String> {
        let limit = self
            .args
            .offline_after
            .map(Duration::from)
            .unwrap_or_else(|| (self.target * 3).max(Duration::from_secs(30)));
        (self.last_new_segment.elapsed() > limit)
            .then(|| format!("no new segment for {}", humantime::format_duration(limit)))
    }

    async fn resolve(&mut self) -> anyhow::Result<Url> {
        let source = self.channel.resolve(Duration::from(self.args.fetch_timeout) * 3).await?;
        let media = self.hls.resolve_variant(&source, &self.variant).await?;
        self.media_url = Some(media.clone());
        Ok(media)
    }

    /// In standby: is the source live again? Returns its playlist if so.
    async fn probe(&mut self) -> Option<MediaPlaylist> {
        self.media_url = None;
        let url = self.resolve().await.ok()?;
        let (playlist, _) = self.hls.media_playlist(&url).await.ok()?;
        (!playlist.ended && !playlist.segments.is_empty()).then_some(playlist)
    }

    /// Record whatever this epoch could not store as explicit gaps.
    fn close_epoch(&mut self) {
        for step in self.tracker.close_epoch(true) {
            if let Step::Gap { epoch, first_sequence, count, estimated_secs } = step {
                warn!(epoch, first_sequence, count, "segments could not be fetched; recording an explicit gap");
                self.record(LedgerRow::gap(epoch, first_sequence, count, estimated_secs, MediaSource::Live));
            }
        }
    }

    /// Act on a playlist: returns how many new segments were handed out.
    async fn apply(&mut self, playlist: &MediaPlaylist) -> usize {
        let mut fresh = 0;
        for step in self.tracker.observe(playlist) {
            match step {
                Step::NewEpoch { epoch, reason } => info!(epoch, reason, "new epoch"),
                Step::Gap { epoch, first_sequence, count, estimated_secs } => {
                    warn!(
                        epoch,
                        first_sequence, count, estimated_secs, "segments lost at the source; recording an explicit gap"
                    );
                    self.record(LedgerRow::gap(epoch, first_sequence, count, estimated_secs, MediaSource::Live));
                }
                Step::Fetch { epoch, segment } => {
                    fresh += 1;
                    self.spawn_fetch(epoch, *segment).await;
                }
            }
        }
        fresh
    }

    async fn spawn_fetch(&mut self, epoch: u32, segment: SourceSegment) {
        let seq = segment.sequence;
        let init_key = match &segment.init {
            Some(init) => match self.store_init(epoch, init).await {
                Ok(k) => Some(k),
                Err(e) => {
                    warn!(seq, error = %format!("{e:#}"), "init section unavailable; will retry");
                    self.tracker.released(seq);
                    return;
                }
            },
            None => None,
        };
        let key = match recording::segment_key(&self.prefix, epoch, seq, segment.extension()) {
            Ok(k) => k,
            Err(e) => {
                error!(seq, error = %e, "cannot name segment");
                self.tracker.released(seq);
                return;
            }
        };
        let (hls, store, spool, done, permits) =
            (self.hls.clone(), self.store.clone(), self.spool.clone(), self.done_tx.clone(), self.permits.clone());
        self.fetches.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let report = match hls.get_with_retries(&segment.uri, segment.byte_range, 3, Duration::from_millis(250)).await {
                Err(e) => Done::Failed { epoch, seq, error: format!("{e:#}") },
                Ok(body) => {
                    let row = LedgerRow {
                        epoch: epoch as i32,
                        media_sequence: seq as i64,
                        duration_secs: segment.duration,
                        bytes: body.len() as i64,
                        object_key: Some(key.to_string()),
                        init_key,
                        program_date_time: segment.program_date_time,
                        source: MediaSource::Live,
                        is_gap: false,
                        gap_count: 0,
                        is_ad: segment.is_ad,
                        discontinuity: segment.discontinuity,
                    };
                    match store.put(&key, body.clone()).await {
                        Ok(()) => Done::Stored { epoch, seq, row },
                        Err(e) => {
                            warn!(seq, error = %format!("{:#}", anyhow::Error::from(e)), "upload failed; spooling the segment locally");
                            match spool.put(&key, &body, Some(row)).await {
                                Ok(()) => Done::Spooled { epoch, seq },
                                Err(e) => Done::Failed { epoch, seq, error: format!("{e:#}") },
                            }
                        }
                    }
                }
            };
            let _ = done.send(report);
        });
    }

    async fn store_init(&mut self, epoch: u32, init: &InitRef) -> anyhow::Result<String> {
        if let Some(k) = self.inits.get(&(epoch, init.clone())) {
            return Ok(k.clone());
        }
        let n = self.inits.keys().filter(|(e, _)| *e == epoch).count()
            + self
                .rows
                .values()
                .filter(|r| r.epoch == epoch as i32)
                .filter_map(|r| r.init_key.as_ref())
                .collect::<std::collections::HashSet<_>>()
                .len();
        let key = recording::init_key(&self.prefix, epoch, n)?;
        let body = self.hls.get(&init.uri, init.byte_range).await?;
        if let Err(e) = self.store.put(&key, body.clone()).await {
            warn!(error = %e, "init upload failed; spooling it");
            self.spool.put(&key, &body, None).await?;
        }
        self.inits.insert((epoch, init.clone()), key.to_string());
        Ok(key.to_string())
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Stored { epoch, seq, row } => {
                if epoch == self.tracker.epoch() {
                    self.tracker.stored(seq);
                }
                self.record(row);
            }
            Done::Spooled { epoch, seq } => {
                if epoch == self.tracker.epoch() {
                    self.tracker.stored(seq);
                }
            }
            Done::Unspooled { row } => self.record(row),
            Done::Failed { epoch, seq, error } => {
                if epoch == self.tracker.epoch() {
                    warn!(epoch, seq, %error, "segment fetch failed; it is retried while the source offers it");
                    self.tracker.released(seq);
                } else {
                    // Its epoch is over: nothing will offer it again.
                    warn!(epoch, seq, %error, "segment of an earlier epoch could not be fetched; recording an explicit gap");
                    self.record(LedgerRow::gap(epoch, seq, 1, self.target.as_secs_f64(), MediaSource::Live));
                }
            }
        }
    }

    fn record(&mut self, row: LedgerRow) {
        debug!(epoch = row.epoch, seq = row.media_sequence, gap = row.is_gap, "ledger row");
        self.rows.insert((row.epoch, row.media_sequence), row.clone());
        let _ = self.db.send(Message::Row(row));
        self.dirty = true;
    }

    fn progress(&self) -> Progress {
        let mut p = Progress::of(self.rows.values());
        p.epoch = p.epoch.max(self.tracker.epoch() as i32);
        p
    }

    fn heartbeat(&self) {
        let _ = self.db.send(Message::Heartbeat(self.progress(), self.state));
    }

    fn maybe_write_playlist(&mut self, kind: PlaylistKind) {
        if !self.dirty || self.last_playlist_write.elapsed() < Duration::from_secs(1) {
            return;
        }
        if self.playlist_write.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.dirty = false;
        self.last_playlist_write = Instant::now();
        let rows: Vec<LedgerRow> = self.rows.values().cloned().collect();
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        self.playlist_write = Some(tokio::spawn(async move {
            if let Err(e) = write_playlist(store.as_ref(), &prefix, &rows, kind).await {
                warn!(error = %format!("{e:#}"), "playlist update failed; will retry");
            }
        }));
    }

    /// Flush everything and close the recording, within `deadline`.
    async fn finalize(
        &mut self,
        state: RecordingState,
        deadline: Instant,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
        fenced: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Outcome {
        // In-flight fetches finish, or are abandoned at the deadline.
        while !self.fetches.is_empty() || !self.spool.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = fenced.changed() => return Outcome::Fenced,
                Some(done) = done_rx.recv() => self.on_done(done),
                Some(_) = self.fetches.join_next(), if !self.fetches.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        while let Ok(done) = done_rx.try_recv() {
            self.on_done(done);
        }
        self.fetches.abort_all();
        self.close_epoch();
        let mut state = state;
        if !self.spool.is_empty() {
            error!(
                spooled = self.spool.len(), dir = %self.spool.dir().display(),
                "object storage did not come back in time; these segments stay in the spool and upload when an observer for this recording runs on this host again"
            );
            state = RecordingState::Interrupted;
        }
        if let Some(h) = self.playlist_write.take() {
            let _ = h.await;
        }
        let rows: Vec<LedgerRow> = self.rows.values().cloned().collect();
        loop {
            match write_playlist(self.store.as_ref(), &self.prefix, &rows, PlaylistKind::Vod).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    warn!(error = %format!("{e:#}"), "writing the VOD playlist failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    error!(error = %format!("{e:#}"), "could not write the VOD playlist; the repair job can rebuild it from the ledger");
                    break;
                }
            }
        }
        let progress = self.progress();
        let (reply, answer) = oneshot::channel();
        let _ = self.db.send(Message::Finalize { progress, state, reply });
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        match tokio::time::timeout(remaining, answer).await {
            Ok(Ok(Ok(jobs))) => {
                info!(?state, segments = progress.segments, gaps = progress.gaps, bytes = progress.bytes,
                      duration_secs = format!("{:.1}", progress.duration_secs), jobs = ?jobs, "recording finalized");
                Outcome::Finalized(state)
            }
            Ok(Ok(Err(LedgerError::Fenced { .. }))) => Outcome::Fenced,
            Ok(Ok(Err(e))) => {
                error!(error = %format!("{:#}", anyhow::Error::from(e)), "finalizing the recording failed");
                Outcome::Finalized(RecordingState::Failed)
            }
            _ => {
                error!(
                    "postgres did not take the final ledger rows in time; the recording stays open for a replacement"
                );
                Outcome::Finalized(RecordingState::Failed)
            }
        }
    }
}

async fn write_playlist(
    store: &dyn ObjectStore,
    prefix: &ObjectKey,
    rows: &[LedgerRow],
    kind: PlaylistKind,
) -> anyhow::Result<()> {
    let text = recording::render(rows, prefix.as_str(), kind);
    store.put(&recording::playlist_key(prefix)?, Bytes::from(text)).await?;
    Ok(())
}

/// Upload what the spool holds, oldest first, as storage allows.
async fn upload_spooled(
    spool: Arc<Spool>,
    store: Arc<dyn ObjectStore>,
    done: mpsc::UnboundedSender<Done>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    while !stop.is_cancelled() {
        let Some(entry) = spool.peek() else {
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_millis(250)) => {} }
            continue;
        };
        let uploaded = async {
            let body = tokio::fs::read(&entry.path).await?;
            store.put(&ObjectKey::parse(&entry.key)?, Bytes::from(body)).await?;
            anyhow::Ok(())
        }
        .await;
        match uploaded {
            Ok(()) => {
                info!(key = %entry.key, left = spool.len() - 1, "spooled segment uploaded");
                spool.pop(&entry).await;
                if let Some(row) = entry.row {
                    let _ = done.send(Done::Unspooled { row });
                }
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                debug!(error = %format!("{e:#}"), "storage still unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
