//! Start-up: register the cell, pick up what the ledger holds, open the
//! spool and start the writer and the uploader; beside the recording, the
//! channel's chat recorder, and on the way out its export.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::admit::Admitted;
use super::fetch::{Fetched, upload_spooled};
use super::resume::resume;
use super::{LivePlaylist, Phase, Recorder, RecordingEnd};
use crate::adopt::Adopter;
use crate::args::ObserverArgs;
use crate::chat_capture::{ChatEnd, ChatRecorder, ChatStats};
use crate::spool::{self, Spool};
use crate::tracker::{Lost, Tracker};
use crate::writer::Writer;
use colony::hls::{FetchPolicy, HlsClient, VariantChoice};
use colony::recording;
use colony::storage::ObjectStore;

/// A recorder ready to record, with the channels its tasks report on.
pub(super) struct Started {
    pub(super) recorder: Recorder,
    pub(super) done_rx: mpsc::UnboundedReceiver<Fetched>,
    pub(super) fenced: tokio::sync::watch::Receiver<bool>,
}

/// Register the cell, pick up what the ledger holds, open the spool and
/// start the writer and the uploader. None when the mothership already
/// buried this cell's row: it must not run.
pub(super) async fn start(
    args: ObserverArgs,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    Admitted { channel, prefix, db_epoch }: Admitted,
) -> anyhow::Result<Option<Started>> {
    let variant = match &args.variant {
        Some(v) => v.clone(),
        None => channel.variant.parse().unwrap_or(VariantChoice::Best),
    };
    // A row the mothership already buried stays buried: this cell must not run.
    let registered = colony::cells::register(
        &pool,
        colony::cells::Registration {
            id: args.cell_id,
            role: colony::cells::CellKind::Observer,
            channel_id: Some(channel.id),
            recording_id: Some(args.recording_id),
            lease_token: Some(args.lease_token),
        },
    )
    .await
    .context("registering the cell")?;
    if !registered {
        warn!(cell = %args.cell_id, "this cell's row was marked dead or stopping by the mothership; not starting");
        return Ok(None);
    }

    let ledger = recording::Ledger::new(pool.clone(), args.recording_id, args.lease_token);
    let mut resumed = resume(&ledger, db_epoch, args.live_window).await.context("loading the ledger")?;
    let spool_root = args.spool_dir.clone().unwrap_or_else(spool::default_root);
    let max_spool = args.spool_max_mib.saturating_mul(1024 * 1024);
    let spool = Arc::new(
        Spool::open(&spool_root, args.recording_id, &prefix, max_spool)
            .await
            .map_err(|e| colony::exit::classified(e).context("opening the spool"))?,
    );
    let spooled: Vec<(i32, u64)> = spool
        .entries()
        .into_iter()
        .filter_map(|e| e.row)
        .filter(|row| !row.is_gap && row.media_sequence >= 0)
        .map(|row| (row.epoch, row.media_sequence as u64))
        .collect();
    if !spooled.is_empty() {
        info!(segments = spooled.len(), "found segments an earlier cell spooled on this host; uploading them");
    }
    resumed.include_spooled(spooled);
    let tracker = Tracker::resume(resumed.epoch, resumed.high, resumed.holes.iter().cloned(), None);
    if resumed.rows > 0 {
        info!(rows = resumed.rows, epoch = resumed.epoch, "continuing a recording another cell started");
    }
    let confirmed = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let (db, fenced) = Writer::spawn(ledger, args.cell_id, confirmed.clone());
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let uploader_stop = CancellationToken::new();
    let uploader = tokio::spawn(upload_spooled(
        spool.clone(),
        store.clone(),
        done_tx.clone(),
        uploader_stop.clone(),
        args.upload_timeout.into(),
    ));

    let mut r = Recorder {
        hls: HlsClient::new(args.fetch_timeout.into(), args.limits).for_channel(&channel.allowed_hosts()),
        queued: VecDeque::new(),
        allowed: channel.allowed_hosts(),
        policy: FetchPolicy::any_host(),
        totals: resumed.totals,
        live: resumed.live,
        failures: BTreeMap::new(),
        inits: HashMap::new(),
        inits_named: resumed.inits,
        fetches: JoinSet::new(),
        uploader: Some((uploader_stop, uploader)),
        media_url: None,
        last_body: 0,
        last_clamps: Vec::new(),
        last_new_segment: Instant::now(),
        last_loaded: None,
        cadence: Duration::from_secs(2),
        playlist: LivePlaylist::default(),
        phase: Phase::Live,
        ended: None,
        adopter: (resumed.rows > 0).then(|| Adopter {
            store: store.clone(),
            prefix: prefix.clone(),
            limits: args.limits,
            duration_secs: if resumed.last_secs > 0.0 { resumed.last_secs } else { 2.0 },
        }),
        adopting: resumed.rows > 0,
        adopt_init: resumed.last_init.clone(),
        confirmed,
        caught_up: false,
        args,
        store,
        pool,
        channel,
        variant,
        prefix,
        tracker,
        db,
        done_tx,
        spool,
    };
    for hole in &resumed.old_holes {
        r.settle_gap(resumed.epoch, hole.clone(), Lost::LeftWindow, r.cadence.as_secs_f64()).await;
    }
    info!(channel = %r.args.channel_login, name = %r.args.channel_name, recording = r.args.recording_id, "observer started");
    Ok(Some(Started { recorder: r, done_rx, fenced }))
}

impl Recorder {
    /// The channel's chat recorder, for a Twitch channel with chat on.
    pub(super) async fn start_chat(&self, stop: CancellationToken) -> Option<JoinHandle<(ChatEnd, ChatStats)>> {
        let twitch = self.channel.platform() == Some(colony::platform::Platform::Twitch);
        if !twitch || !self.channel.chat || self.args.chat.no_chat {
            return None;
        }
        let login = self.channel.platform_handle.clone().unwrap_or_else(|| self.channel.login.clone());
        let opened = ChatRecorder::open(
            self.args.chat.clone(),
            &login,
            self.pool.clone(),
            self.store.clone(),
            self.prefix.clone(),
            self.args.recording_id,
            self.args.lease_token,
        )
        .await;
        match opened {
            Ok(chat) => Some(tokio::spawn(chat.run(stop))),
            Err(e) => {
                warn!(error = %e, "could not open the chat archive; recording the video without chat");
                None
            }
        }
    }

    /// Wait for the chat recorder's last chunk; once the recording is
    /// finalized, queue its chat export (once).
    pub(super) async fn finish_chat(&self, chat: JoinHandle<(ChatEnd, ChatStats)>, end: RecordingEnd) {
        let Ok(Ok((ChatEnd::Stopped, _))) = tokio::time::timeout(Duration::from_secs(30), chat).await else {
            warn!("the chat recorder did not stop cleanly; its last messages may be missing");
            return;
        };
        if !matches!(end, RecordingEnd::Finalized(_)) {
            return;
        }
        let id = self.args.recording_id;
        match colony::recording::chat_ledger::chunk_count(&self.pool, id).await {
            Ok(chunks) if chunks > 0 => {
                let job = colony::queue::JobArgs::ChatExport(colony::queue::RecordingArgs { recording_id: id }).job();
                if let Err(e) = colony::queue::Queue::new(self.pool.clone()).enqueue(&job).await {
                    warn!(error = %e, "could not queue the chat export; `mothership job enqueue chat-export` does it");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not read the chat archive's chunks"),
        }
    }
}
