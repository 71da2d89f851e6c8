//! The recorder: one recording from admission to its end, and the loop at
//! its heart. [`run`] admits the assignment, starts the cell, then runs
//! `Recorder::record_until_end`: in the current [`Phase`] it reloads the
//! playlist on its cadence, hands what the tracker finds new to fetch tasks,
//! records their reports and the gaps in the ledger, heartbeats and rewrites
//! the live playlist, until the broadcast ends (and the standby window
//! passes), the cell is told to stop, or it is fenced out; then it finalizes.
//!
//! Its cost per segment does not grow with the recording: totals are kept
//! running, the live playlist holds the last `--live-window` rows, and the
//! VOD playlist is streamed from the ledger once at the end.
//!
//! The rest of a recording's life sits beside the loop, in `recorder/`:
//! `admit.rs` (is the assignment ours to record), `resume.rs` (what a
//! replacement picks up from the ledger), `start.rs` (registering the cell,
//! the writer, the spool uploader, and chat), `fetch.rs` (the fetch backlog
//! and its tasks) and `finalize.rs` (closing the recording and publishing
//! its VOD playlist).

mod admit;
mod fetch;
mod finalize;
mod resume;
mod start;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use url::Url;

use super::adopt::Adopter;
use super::args::ObserverArgs;
use super::spool::Spool;
use super::tracker::{Lost, Step, Tracker};
use super::writer::Message;
use admit::admit;
use colony::channel::Channel;
use colony::exit::{Classify, ErrorClass};
use colony::hls::{
    Clamp, FetchPolicy, HlsClient, HlsError, HostPattern, InitRef, MediaPlaylist, SourceSegment, VariantChoice,
};
use colony::recording::{self, LedgerRow, LiveWindow, MediaSource, Progress, RecordingState};
use colony::storage::{ObjectKey, ObjectStore};
use fetch::Fetched;
use start::{Started, start};

/// How the cell's recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingEnd {
    /// The recording was finalized in this state.
    Finalized(RecordingState),
    /// Another cell holds the recording now; nothing more was written.
    Fenced,
    /// The recording was already closed when the cell started.
    AlreadyClosed(RecordingState),
    /// Postgres would not take the end in time: the recording stays open,
    /// for a replacement to continue and close.
    NotFinalized,
}

impl RecordingEnd {
    /// The end as the process reports it: a recording finalized here, or
    /// found closed, is done; any other end is an [`EndError`], whose class
    /// picks the exit code.
    pub fn into_result(self) -> Result<(), EndError> {
        match self {
            RecordingEnd::Finalized(_) | RecordingEnd::AlreadyClosed(_) => Ok(()),
            RecordingEnd::Fenced => Err(EndError::Fenced),
            RecordingEnd::NotFinalized => Err(EndError::NotFinalized),
        }
    }
}

/// A recording this cell leaves without having closed it.
#[derive(Debug, thiserror::Error)]
pub enum EndError {
    #[error("fenced out: the recording was handed to a replacement cell")]
    Fenced,
    #[error("the recording could not be finalized; see the log above")]
    NotFinalized,
}

/// Fenced out is its own exit (3). A recording Postgres would not close in
/// time stays open for a replacement: a failure that may pass (exit 1).
impl Classify for EndError {
    fn class(&self) -> ErrorClass {
        match self {
            EndError::Fenced => ErrorClass::Fenced,
            EndError::NotFinalized => ErrorClass::Transient,
        }
    }
}

/// Record until the broadcast ends (and the standby window passes), the
/// cell is told to stop, or it is fenced out.
pub async fn run(
    args: ObserverArgs,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    stop: CancellationToken,
) -> anyhow::Result<RecordingEnd> {
    let admitted = match admit(&args, &pool).await.map_err(colony::exit::classified)? {
        Ok(admitted) => admitted,
        Err(end) => return Ok(end),
    };
    let Some(started) = start(args, pool, store, admitted).await? else {
        return Ok(RecordingEnd::Fenced);
    };
    let Started { mut recorder, mut done_rx, mut fenced } = started;
    let chat_stop = CancellationToken::new();
    let chat = recorder.start_chat(chat_stop.clone()).await;
    let end = recorder.record_until_end(&mut done_rx, &mut fenced, &stop).await;
    chat_stop.cancel();
    if let Some(chat) = chat {
        recorder.finish_chat(chat, end).await;
    }
    recorder.stop_uploader().await;
    if end == RecordingEnd::Fenced {
        error!(
            recording = recorder.args.recording_id,
            "this recording was handed to a replacement cell; exiting without another write"
        );
    }
    Ok(end)
}

/// The whole state machine of a recording cell: recording the live
/// source, or standing by after it went offline until `until`. Whether it
/// ends (finalized, fenced, stopped) is the loop's return value, not a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Live,
    Standby { until: Instant },
}

impl Phase {
    /// The recording's state as Postgres shows it in this phase.
    fn recording_state(self) -> RecordingState {
        match self {
            Phase::Live => RecordingState::Recording,
            Phase::Standby { .. } => RecordingState::Standby,
        }
    }
}

/// What the loop does next after a playlist load or a standby probe.
enum Next {
    /// Load (or probe) again at this instant.
    ReloadAt(Instant),
    /// The standby window passed: finalize as complete.
    Finish,
}

impl Recorder {
    /// The loop: reload on the playlist's cadence in the current [`Phase`],
    /// take fetch reports, heartbeat, until the recording ends.
    async fn record_until_end(
        &mut self,
        done_rx: &mut mpsc::UnboundedReceiver<Fetched>,
        fenced: &mut tokio::sync::watch::Receiver<bool>,
        stop: &CancellationToken,
    ) -> RecordingEnd {
        let mut next_reload = Instant::now();
        let mut heartbeat = tokio::time::interval(self.args.heartbeat.into());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = fenced.changed() => return RecordingEnd::Fenced,
                _ = stop.cancelled() => {
                    info!("stop requested; finalizing as interrupted");
                    let deadline = Instant::now() + Duration::from(self.args.shutdown_deadline);
                    return self.finalize(RecordingState::Interrupted, deadline, done_rx, fenced).await;
                }
                Some(done) = done_rx.recv() => {
                    self.on_fetched(done);
                    self.pump().await;
                }
                _ = heartbeat.tick() => self.heartbeat(),
                _ = tokio::time::sleep_until(next_reload) => {
                    let next = match self.phase {
                        Phase::Live => self.live_step().await,
                        Phase::Standby { until } => self.standby_step(until).await,
                    };
                    match next {
                        Next::ReloadAt(at) => next_reload = at,
                        Next::Finish => {
                            info!("standby window passed; finalizing");
                            let deadline = Instant::now() + Duration::from(self.args.finalize_deadline);
                            return self.finalize(RecordingState::Complete, deadline, done_rx, fenced).await;
                        }
                    }
                }
            }
            self.maybe_write_playlist();
        }
    }

    /// Live: load the playlist; an offline source starts the standby window.
    async fn live_step(&mut self) -> Next {
        let started = Instant::now();
        let (wait, offline) = self.reload().await;
        if let Some(reason) = offline {
            let until = Instant::now() + Duration::from(self.args.standby);
            info!(%reason, standby = %self.args.standby, "source offline; standing by");
            self.phase = Phase::Standby { until };
            // Nothing to capture: no cell this one replaced captures either.
            self.caught_up = true;
            self.heartbeat();
        }
        Next::ReloadAt(started + wait)
    }

    /// Probe again one cadence (at least a second) after `started`, but not
    /// past the end of the standby window.
    fn next_probe(&self, started: Instant, until: Instant) -> Next {
        Next::ReloadAt(started + self.cadence.max(Duration::from_secs(1)).min(until - Instant::now()))
    }

    /// Standby: probe the source; back inside the window continues the
    /// recording (the same epoch if it carries on, a new one if not).
    async fn standby_step(&mut self, until: Instant) -> Next {
        let started = Instant::now();
        // The source ended while this cell was behind: the rest of its final
        // playlist is still served, so fetch it rather than let it go.
        if self.tracker.waiting()
            && let Some(last) = self.ended.take()
        {
            self.apply(&last, self.last_loaded.map(|t| t.elapsed())).await;
            self.ended = Some(last);
        }
        let Some(playlist) = self.probe().await else {
            if Instant::now() >= until {
                return Next::Finish;
            }
            return self.next_probe(started, until);
        };
        if self.tracker.continues(&playlist) {
            info!(
                epoch = self.tracker.epoch(),
                "source is back inside the standby window and continues where it left off"
            );
        } else {
            self.close_epoch(false);
            let epoch = self.tracker.next_epoch();
            self.new_epoch();
            info!(epoch, "source is back inside the standby window; continuing the recording as a new epoch");
        }
        if playlist.ended {
            // It ended while this cell could not see it (an outage at the
            // end of a broadcast): what its final playlist lists is still
            // served, so it is fetched, or a gap with its reason. The
            // broadcast is over; the standby window goes on.
            info!(
                last = playlist.last_sequence(),
                "source is back with its final playlist; fetching what it lists past what this recording holds"
            );
            let since = self.last_loaded.map(|t| t.elapsed());
            self.last_loaded = Some(Instant::now());
            self.apply(&playlist, since).await;
            self.ended = Some(playlist);
            self.heartbeat();
            return self.next_probe(started, until);
        }
        self.phase = Phase::Live;
        self.ended = None;
        self.last_new_segment = Instant::now();
        self.last_loaded = None;
        self.heartbeat();
        Next::ReloadAt(Instant::now())
    }
}

/// What the loop carries from one turn to the next: the source and where
/// it may send us, the tracker, the running totals and live window, the
/// fetch backlog, and the channels to the writer and the fetch tasks.
struct Recorder {
    args: ObserverArgs,
    store: Arc<dyn ObjectStore>,
    pool: PgPool,
    hls: HlsClient,
    channel: Channel,
    variant: VariantChoice,
    allowed: Vec<HostPattern>,
    /// Where this source may send us; set when the source is resolved.
    policy: FetchPolicy,
    prefix: ObjectKey,
    tracker: Tracker,
    totals: Progress,
    live: LiveWindow,
    /// The last error of each sequence waiting for another try: its gap reason if it never succeeds.
    failures: BTreeMap<u64, String>,
    /// Init sections stored in the current epoch, and how many.
    inits: HashMap<InitRef, String>,
    inits_named: usize,
    db: mpsc::UnboundedSender<Message>,
    done_tx: mpsc::UnboundedSender<Fetched>,
    /// Segments handed out, waiting for one of `--concurrency` fetch tasks.
    queued: VecDeque<(u32, SourceSegment)>,
    fetches: JoinSet<()>,
    spool: Arc<Spool>,
    uploader: Option<(CancellationToken, JoinHandle<()>)>,
    media_url: Option<Url>,
    last_body: u64,
    last_clamps: Vec<Clamp>,
    last_new_segment: Instant,
    last_loaded: Option<Instant>,
    /// How long after a change to reload: the clamped target duration, or
    /// less when the segments are shorter.
    cadence: Duration,
    playlist: LivePlaylist,
    phase: Phase,
    /// The playlist that carried `EXT-X-ENDLIST`, while standing by after
    /// it: what the in-flight cap held back is handed out from it as the
    /// fetches drain (issue 24, finding 2).
    ended: Option<MediaPlaylist>,
    /// For a replacement: adopts what an earlier cell stored before any gap
    /// is written, and again at finalize.
    adopter: Option<Adopter>,
    /// Still before the first playlist since start: gaps are checked against storage.
    adopting: bool,
    adopt_init: Option<String>,
    /// When Postgres last confirmed this cell's lease (a write that passed the fence).
    confirmed: Arc<std::sync::Mutex<std::time::Instant>>,
    /// This cell has stored a segment it fetched, or found the source
    /// offline; sent with each heartbeat (`cells.caught_up_at`).
    caught_up: bool,
}

/// Where the live playlist stands.
#[derive(Default)]
struct LivePlaylist {
    dirty: bool,
    written_at: Option<Instant>,
    writing: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Load the playlist once. Returns how long to wait before the next load
    /// and, if the source is now offline, why.
    async fn reload(&mut self) -> (Duration, Option<String>) {
        let loaded = match self.media_url.clone() {
            Some(url) => match self.hls.media_playlist(&url, &self.policy).await {
                // A signed playlist URL that expired (401, 403) or moved (404,
                // 410): resolve the channel again before counting it offline.
                Err(e) if e.is_gone() || e.is_denied() => {
                    info!(error = %e, "the playlist URL stopped working; resolving the channel again");
                    self.media_url = None;
                    match self.resolve().await {
                        Ok(loaded) => Ok(loaded),
                        Err(again) if e.is_gone() => {
                            return (self.cadence, Some(format!("{e}; resolving again: {again:#}")));
                        }
                        Err(again) => {
                            warn!(error = %format!("{again:#}"), "resolving the channel again failed; retrying");
                            return (self.cadence / 2, self.stalled());
                        }
                    }
                }
                other => other,
            },
            None => match self.resolve().await {
                Ok(loaded) => Ok(loaded),
                Err(e) => return (self.cadence / 2, self.stalled().or(Some(format!("source unavailable: {e:#}")))),
            },
        };
        match loaded {
            Ok((playlist, body)) => {
                let fingerprint = digest(&body);
                let changed = fingerprint != self.last_body;
                self.last_body = fingerprint;
                if playlist.clamps != self.last_clamps {
                    for clamp in &playlist.clamps {
                        warn!(%clamp, "the source sent an out-of-range value");
                    }
                    self.last_clamps = playlist.clamps.clone();
                }
                self.cadence = playlist.reload_interval();
                let since = self.last_loaded.map(|t| t.elapsed());
                self.last_loaded = Some(Instant::now());
                let fresh = self.apply(&playlist, since).await;
                self.adopting = false;
                if fresh > 0 {
                    self.last_new_segment = Instant::now();
                }
                if playlist.ended {
                    self.ended = Some(playlist);
                    return (self.cadence, Some("the playlist carries EXT-X-ENDLIST".into()));
                }
                // RFC 8216 §6.3.4: a changed playlist is reloaded after one
                // target duration, an unchanged one after half of one.
                let wait = if changed { self.cadence } else { self.cadence / 2 };
                (wait, self.stalled())
            }
            Err(e) if e.is_gone() => {
                self.media_url = None;
                (self.cadence, Some(format!("{e}")))
            }
            Err(e) => {
                warn!(error = %colony::error_chain(&e), "playlist reload failed; retrying");
                if matches!(e, HlsError::Malformed { .. }) {
                    self.last_body = 0;
                }
                (self.cadence / 2, self.stalled())
            }
        }
    }

    /// The source has published nothing new for too long. The target
    /// duration behind the default is clamped, so this always comes.
    fn stalled(&self) -> Option<String> {
        let limit = self
            .args
            .offline_after
            .map(Duration::from)
            .unwrap_or_else(|| (self.cadence * 3).max(Duration::from_secs(30)));
        (self.last_new_segment.elapsed() > limit)
            .then(|| format!("no new segment for {}", humantime::format_duration(limit)))
    }

    /// Resolve the channel's source to its media playlist, and load it.
    async fn resolve(&mut self) -> anyhow::Result<(MediaPlaylist, Bytes)> {
        let source = self.channel.resolve(Duration::from(self.args.fetch_timeout) * 3, &self.args.resolvers).await?;
        let policy = FetchPolicy::for_source(&source, &self.allowed);
        let (media, playlist, body) = self.hls.open(&source, &self.variant, &policy).await?;
        self.policy = policy;
        self.media_url = Some(media);
        Ok((playlist, body))
    }

    /// In standby: does the source offer something new, live again or
    /// ended while this cell could not load it? Returns its playlist if so.
    /// A source still serving the playlist it froze on does not.
    async fn probe(&mut self) -> Option<MediaPlaylist> {
        self.media_url = None;
        let (playlist, _) = self.resolve().await.ok()?;
        self.tracker.offers_news(&playlist).then_some(playlist)
    }

    /// A new epoch: init sections and failures of the last one no longer apply.
    fn new_epoch(&mut self) {
        self.inits.clear();
        self.inits_named = 0;
        self.failures.clear();
        self.adopt_init = None;
    }

    /// Record `run` as a gap, unless this replacement finds (some of) it in
    /// storage, stored by the cell it replaced: that part is adopted.
    async fn settle_gap(&mut self, epoch: u32, run: RangeInclusive<u64>, lost: Lost, per_segment_secs: f64) {
        let Some(adopter) = self.adopter.as_ref().filter(|_| self.adopting && epoch == self.tracker.epoch()) else {
            self.record_gap(epoch, run, lost, per_segment_secs);
            return;
        };
        let (adopted, missing) = adopter.settle(epoch, run, self.adopt_init.as_deref()).await;
        if !adopted.is_empty() {
            info!(
                epoch,
                segments = adopted.len(),
                "adopted segments an earlier cell stored but never put in the ledger"
            );
        }
        for row in adopted {
            self.record(row);
        }
        for gap in missing {
            self.record_gap(epoch, gap, lost, per_segment_secs);
        }
    }

    /// Record whatever this epoch could not store as explicit gaps.
    fn close_epoch(&mut self, abandon_in_flight: bool) {
        let steps = self.tracker.close_epoch(abandon_in_flight);
        for step in steps {
            if let Step::Gap { epoch, first_sequence, count, estimated_secs, lost } = step {
                let per_segment = estimated_secs / count.max(1) as f64;
                self.record_gap(epoch, first_sequence..=first_sequence + (count - 1), lost, per_segment);
            }
        }
    }

    /// Why these sequence numbers were lost, in words for the gap row.
    fn gap_reason(&mut self, run: &RangeInclusive<u64>, lost: Lost) -> String {
        let count = run.end() - run.start() + 1;
        let last_error = self.failures.range(run.clone()).next_back().map(|(_, e)| e.clone());
        let keys: Vec<u64> = self.failures.range(run.clone()).map(|(k, _)| *k).collect();
        for k in keys {
            self.failures.remove(&k);
        }
        match (lost, last_error) {
            (_, Some(error)) => format!("fetching failed while the source offered it: {error}"),
            (Lost::Skipped, None) => format!("the source's window moved past {count} segment(s) between two loads"),
            (Lost::LeftWindow, None) => "left the source's window before it could be fetched".into(),
            (Lost::Unfinished, None) => "not stored when the epoch or the recording ended".into(),
        }
    }

    fn record_gap(&mut self, epoch: u32, run: RangeInclusive<u64>, lost: Lost, per_segment_secs: f64) {
        let count = run.end() - run.start() + 1;
        let reason = self.gap_reason(&run, lost);
        warn!(epoch, first_sequence = run.start(), count, %reason, "segments lost; recording an explicit gap");
        let row = LedgerRow::gap(epoch, *run.start(), count, count as f64 * per_segment_secs, MediaSource::Live)
            .because(reason);
        self.record(row);
    }

    /// Act on a playlist: returns how many new segments were handed out.
    async fn apply(&mut self, playlist: &MediaPlaylist, since: Option<Duration>) -> usize {
        let mut fresh = 0;
        for step in self.tracker.observe(playlist, since) {
            match step {
                Step::NewEpoch { epoch, reason } => {
                    info!(epoch, %reason, "new epoch");
                    self.new_epoch();
                }
                Step::Gap { epoch, first_sequence, count, estimated_secs, lost } => {
                    let per_segment = estimated_secs / count.max(1) as f64;
                    self.settle_gap(epoch, first_sequence..=first_sequence + (count - 1), lost, per_segment).await;
                }
                Step::Fetch { epoch, segment } => {
                    fresh += 1;
                    self.queued.push_back((epoch, *segment));
                }
            }
        }
        self.pump().await;
        fresh
    }

    fn record(&mut self, row: LedgerRow) {
        debug!(epoch = row.epoch, seq = row.media_sequence, gap = row.is_gap, "ledger row");
        self.totals.add(&row);
        self.live.insert(row.clone());
        let _ = self.db.send(Message::Row(row));
        self.playlist.dirty = true;
    }

    fn progress(&self) -> Progress {
        let mut p = self.totals;
        p.epoch = p.epoch.max(self.tracker.epoch() as i32);
        p
    }

    fn heartbeat(&self) {
        let _ = self.db.send(Message::Heartbeat(self.progress(), self.phase.recording_state(), self.caught_up));
    }

    /// This cell holds its lease and has stored a segment it fetched (or
    /// found the source offline): say so at once, so that the mothership
    /// stops a silent cell this one replaced only now (make before break).
    fn caught_up(&mut self) {
        if !self.caught_up {
            self.caught_up = true;
            info!("caught up: fetching and storing under this cell's lease");
            self.heartbeat();
        }
    }

    /// Rewrite the live playlist at most once a second, one write at a time,
    /// and only while Postgres confirmed this cell's lease within
    /// `--write-lease`: a cell cut off from Postgres may have been replaced,
    /// and must not overwrite its replacement's playlist.
    fn maybe_write_playlist(&mut self) {
        let confirmed = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if confirmed.elapsed() > Duration::from(self.args.write_lease) {
            return;
        }
        let p = &mut self.playlist;
        if !p.dirty || p.written_at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        if p.writing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        p.dirty = false;
        p.written_at = Some(Instant::now());
        let text = Bytes::from(self.live.render(self.prefix.as_str()));
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        p.writing = Some(tokio::spawn(async move {
            let written = match recording::playlist_key(&prefix) {
                Ok(key) => store.put(&key, text).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                warn!(error = %colony::error_chain(&e), "live playlist update failed; will retry");
            }
        }));
    }
}

/// A playlist body's fingerprint, to tell a changed playlist from one that was not.
fn digest(body: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}
