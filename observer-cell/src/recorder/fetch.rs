//! Fetching, off the recorder's loop: the backlog of segments the tracker
//! handed out, at most `--concurrency` fetch tasks that download and store
//! them (spooling to local disk when storage is down), what the tasks report
//! back, and the uploader that drains the spool once storage returns.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Recorder;
use crate::spool::Spool;
use crate::tracker::Lost;
use colony::hls::{Body, FetchPolicy, HlsClient, InitRef, Retry, SourceSegment};
use colony::recording::{self, LedgerRow, MediaSource};
use colony::storage::{ObjectKey, ObjectStore, StorageError};

/// What a fetch task reports back.
pub(super) enum Fetched {
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
        duration: f64,
        error: String,
        /// Refused or over the cap: asking again cannot help.
        lost_for_good: bool,
    },
    /// A spooled segment reached storage.
    Unspooled {
        row: LedgerRow,
    },
    /// A spooled segment's file vanished and storage does not hold it: its
    /// bytes are gone, and its row becomes a gap with the reason.
    SpoolLost {
        row: LedgerRow,
        error: String,
    },
}

impl Recorder {
    /// Start queued fetches while fewer than `--concurrency` run. Tasks are
    /// only made for fetches that run, so a backlog costs a queue entry each.
    pub(super) async fn pump(&mut self) {
        while self.fetches.try_join_next().is_some() {}
        while self.fetches.len() < self.args.concurrency.max(1) {
            let Some((epoch, segment)) = self.queued.pop_front() else { break };
            self.spawn_fetch(epoch, segment).await;
        }
    }

    async fn spawn_fetch(&mut self, epoch: u32, segment: SourceSegment) {
        let seq = segment.sequence;
        let init_key = match &segment.init {
            Some(init) => match self.store_init(epoch, init).await {
                Ok(k) => Some(k),
                Err(e) => {
                    warn!(seq, error = %format!("{e:#}"), "init section unavailable; will retry");
                    self.failures.insert(seq, format!("init section unavailable: {e:#}"));
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
        let task = FetchTask {
            upload_timeout: self.args.upload_timeout.into(),
            hls: self.hls.clone(),
            store: self.store.clone(),
            spool: self.spool.clone(),
            policy: self.policy.clone(),
            epoch,
            key,
            init_key,
            segment,
        };
        let done = self.done_tx.clone();
        self.fetches.spawn(async move {
            let duration = task.segment.duration;
            // A panic while fetching one segment costs that segment, not the cell.
            let report = std::panic::AssertUnwindSafe(task.run()).catch_unwind().await.unwrap_or(Fetched::Failed {
                epoch,
                seq,
                duration,
                error: "fetching the segment panicked".into(),
                lost_for_good: false,
            });
            let _ = done.send(report);
        });
    }

    async fn store_init(&mut self, epoch: u32, init: &InitRef) -> anyhow::Result<String> {
        if let Some(k) = self.inits.get(init) {
            return Ok(k.clone());
        }
        let key = recording::init_key(&self.prefix, epoch, self.inits_named)?;
        let body = self.hls.init_section(&init.uri, init.byte_range, &self.policy).await?;
        let uploaded = bounded(self.args.upload_timeout.into(), body.len() as u64, self.store.put(&key, body.clone()));
        if let Err(error) = uploaded.await {
            warn!(%error, "init upload failed; spooling it");
            self.spool.put(&key, Body::Memory(body), None).await?;
        }
        self.inits_named += 1;
        self.inits.insert(init.clone(), key.to_string());
        Ok(key.to_string())
    }

    pub(super) fn on_fetched(&mut self, done: Fetched) {
        let current = |epoch: u32, r: &Recorder| epoch == r.tracker.epoch();
        match done {
            Fetched::Stored { epoch, seq, row } => {
                if current(epoch, self) {
                    self.tracker.stored(seq);
                    self.failures.remove(&seq);
                }
                self.record(row);
                self.caught_up();
            }
            Fetched::Spooled { epoch, seq } => {
                if current(epoch, self) {
                    self.tracker.stored(seq);
                    self.failures.remove(&seq);
                }
            }
            Fetched::Unspooled { row } => {
                self.record(row);
                self.caught_up();
            }
            Fetched::SpoolLost { row, error } => {
                error!(seq = row.media_sequence, %error, "a spooled segment was lost before its upload; recording an explicit gap");
                self.record(row.into_gap(error));
            }
            Fetched::Failed { epoch, seq, duration, error, lost_for_good } => {
                if lost_for_good {
                    warn!(epoch, seq, %error, "segment cannot be fetched; recording an explicit gap");
                    if current(epoch, self) {
                        self.tracker.lost(seq);
                    }
                    self.failures.insert(seq, error);
                    self.record_gap(epoch, seq..=seq, Lost::LeftWindow, duration);
                } else if current(epoch, self) {
                    warn!(epoch, seq, %error, "segment fetch failed; it is retried while the source offers it");
                    self.failures.insert(seq, error);
                    self.tracker.released(seq);
                } else {
                    // Its epoch is over: nothing will offer it again.
                    warn!(epoch, seq, %error, "segment of an earlier epoch could not be fetched; recording an explicit gap");
                    let row = LedgerRow::gap(epoch, seq, 1, duration, MediaSource::Live)
                        .because(format!("fetching failed after its epoch ended: {error}"));
                    self.record(row);
                }
            }
        }
    }

    pub(super) async fn stop_uploader(&mut self) {
        if let Some((stop, handle)) = self.uploader.take() {
            stop.cancel();
            let _ = handle.await;
        }
    }
}

/// One segment to fetch and store, off the recorder's loop.
struct FetchTask {
    upload_timeout: Duration,
    hls: HlsClient,
    store: Arc<dyn ObjectStore>,
    spool: Arc<Spool>,
    policy: FetchPolicy,
    epoch: u32,
    key: ObjectKey,
    init_key: Option<String>,
    segment: SourceSegment,
}

impl FetchTask {
    async fn run(self) -> Fetched {
        let FetchTask { upload_timeout, hls, store, spool, policy, epoch, key, init_key, segment } = self;
        let seq = segment.sequence;
        let retry = Retry { attempts: 3, backoff: Duration::from_millis(250) };
        let body = match hls
            .segment(&segment.uri, segment.byte_range, segment.duration, &policy, spool.incoming(), retry)
            .await
        {
            Ok(body) => body,
            Err(e) => {
                let lost_for_good = e.is_final() && !e.is_gone();
                let error = colony::error_chain(&e);
                return Fetched::Failed { epoch, seq, duration: segment.duration, error, lost_for_good };
            }
        };
        let row = LedgerRow::stored(epoch, &segment, &key, init_key, body.len(), MediaSource::Live);
        match bounded(upload_timeout, body.len(), body.upload(store.as_ref(), &key)).await {
            Ok(()) => Fetched::Stored { epoch, seq, row },
            Err(error) => {
                warn!(seq, %error, "upload failed; spooling the segment locally");
                match spool.put(&key, body, Some(row)).await {
                    Ok(()) => Fetched::Spooled { epoch, seq },
                    Err(e) => Fetched::Failed {
                        epoch,
                        seq,
                        duration: segment.duration,
                        error: colony::error_chain(&e),
                        lost_for_good: false,
                    },
                }
            }
        }
    }
}

/// Upload what the spool holds, oldest first, as storage allows.
pub(super) async fn upload_spooled(
    spool: Arc<Spool>,
    store: Arc<dyn ObjectStore>,
    done: mpsc::UnboundedSender<Fetched>,
    stop: CancellationToken,
    upload_timeout: Duration,
) {
    let mut backoff = Duration::from_millis(500);
    while !stop.is_cancelled() {
        let Some(entry) = spool.peek() else {
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_millis(250)) => {} }
            continue;
        };
        let uploaded = async {
            let key = ObjectKey::parse(&entry.key)?;
            let path = match spool.verified_path(&entry) {
                Ok(path) => path,
                Err(changed) => return vanished(store.as_ref(), &key, &entry, changed, upload_timeout).await,
            };
            bounded(upload_timeout, entry.size, store.put_file(&key, &path)).await.map_err(anyhow::Error::msg)?;
            anyhow::Ok(Settled::Uploaded)
        }
        .await;
        match uploaded {
            Ok(settled) => {
                spool.pop(&entry).await;
                match (settled, entry.row) {
                    (Settled::Lost(error), Some(row)) => {
                        let _ = done.send(Fetched::SpoolLost { row, error });
                    }
                    (Settled::Lost(error), None) => {
                        error!(key = %entry.key, %error, "a spooled init section was lost before its upload");
                    }
                    (how, row) => {
                        let by =
                            if matches!(how, Settled::ByAnother) { "another cell on this host" } else { "this cell" };
                        info!(key = %entry.key, left = spool.len(), "spooled segment uploaded by {by}");
                        if let Some(row) = row {
                            let _ = done.send(Fetched::Unspooled { row });
                        }
                    }
                }
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                debug!(error = %format!("{e:#}"), "storage still unavailable");
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How a spool entry left the spool.
enum Settled {
    /// This uploader put it into storage.
    Uploaded,
    /// Its file was gone or changed, and storage holds the object at the
    /// spooled size: another cell of this recording on this host (an old
    /// observer that woke up, sharing the spool directory) uploaded it.
    ByAnother,
    /// Its file was gone or changed, and storage has no such object.
    Lost(String),
}

/// An entry whose spooled file is gone or no longer what was written. Ask
/// storage whether the object arrived by another way; an answer it cannot
/// give (storage still down) is an error, and the entry waits at the head
/// of the spool as before. Without this, one vanished file blocked every
/// entry behind it until the recording ended.
async fn vanished(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    entry: &crate::spool::Entry,
    changed: std::io::Error,
    upload_timeout: Duration,
) -> anyhow::Result<Settled> {
    let asked = tokio::time::timeout(upload_timeout, store.head(key)).await;
    match asked {
        Ok(Ok(meta)) if meta.size == entry.size => Ok(Settled::ByAnother),
        Ok(Ok(meta)) => Ok(Settled::Lost(format!(
            "its spooled copy {}, and storage holds {} bytes under its key, not the {} that were spooled",
            describe(&changed),
            meta.size,
            entry.size
        ))),
        Ok(Err(e)) if e.is_not_found() => {
            Ok(Settled::Lost(format!("its spooled copy {} before it reached storage", describe(&changed))))
        }
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("asking storage about a spooled object whose file is gone")),
        Err(_) => Err(anyhow::anyhow!("{} about a spooled object whose file is gone", no_answer(upload_timeout))),
    }
}

fn describe(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound { "vanished".into() } else { format!("changed ({e})") }
}

/// Run one upload of `bytes` under its deadline: `base` plus 4 s per MiB
/// (a floor of 256 KiB/s, so a slow uplink is not mistaken for a dead
/// one). Storage that drops packets gets no longer than that; the error
/// comes back in words, for the log and the spool's decision.
async fn bounded<T>(
    base: Duration,
    bytes: u64,
    upload: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, String> {
    let limit = base + Duration::from_secs_f64(bytes as f64 / (256.0 * 1024.0));
    match tokio::time::timeout(limit, upload).await {
        Ok(done) => done.map_err(|e| colony::error_chain(&e)),
        Err(_) => Err(no_answer(limit)),
    }
}

fn no_answer(limit: Duration) -> String {
    format!("no answer from storage within {:.1} s", limit.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use colony::storage::FileStore;

    fn key(seq: u64) -> ObjectKey {
        ObjectKey::parse(&format!("channels/a/7/e0/{seq:08}.ts")).unwrap()
    }

    /// A spool holding segments 1 and 2 (5 bytes each), and an empty store.
    async fn spool_of_two(root: &std::path::Path) -> (Arc<Spool>, Arc<dyn ObjectStore>) {
        let spool =
            Spool::open(&root.join("spool"), 7, &ObjectKey::parse("channels/a/7").unwrap(), 1 << 20).await.unwrap();
        for seq in [1, 2] {
            let row = LedgerRow::object(0, seq, 2.0, &key(seq), None, 5, MediaSource::Live);
            spool.put(&key(seq), Body::Memory(Bytes::from_static(b"media")), Some(row)).await.unwrap();
        }
        let store: Arc<dyn ObjectStore> = Arc::new(FileStore::open(&root.join("store")).await.unwrap());
        (Arc::new(spool), store)
    }

    /// Start the uploader; what it reports comes out of the receiver.
    fn start(
        spool: &Arc<Spool>,
        store: &Arc<dyn ObjectStore>,
    ) -> (mpsc::UnboundedReceiver<Fetched>, CancellationToken) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(upload_spooled(spool.clone(), store.clone(), tx, stop.clone(), Duration::from_secs(5)));
        (rx, stop)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Fetched>) -> Fetched {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the uploader reported nothing within 10 s: it is stuck on the head of the spool")
            .unwrap()
    }

    /// Defect: an old observer that wakes up shares the spool directory with
    /// its replacement on the same host, uploads an entry and removes its
    /// file. The replacement's uploader then retried that entry until the
    /// recording ended, and every spooled segment behind it waited too. Now
    /// storage is asked: it holds the object, so the row is written and the
    /// next entry goes up.
    #[tokio::test]
    async fn an_entry_another_cell_uploaded_is_settled_and_the_rest_go_up() {
        let root = tempfile::tempdir().unwrap();
        let (spool, store) = spool_of_two(root.path()).await;
        // The woken cell uploads segment 1 and removes its spooled file.
        store.put(&key(1), Bytes::from_static(b"media")).await.unwrap();
        std::fs::remove_file(&spool.entries()[0].path).unwrap();
        let (mut rx, stop) = start(&spool, &store);
        for seq in [1, 2] {
            match next(&mut rx).await {
                Fetched::Unspooled { row } => assert_eq!(row.media_sequence, seq),
                _ => panic!("a spooled segment that storage holds must be written to the ledger, not lost"),
            }
        }
        assert!(spool.is_empty());
        assert_eq!(colony::storage::get_bytes(store.as_ref(), &key(2)).await.unwrap(), Bytes::from_static(b"media"));
        stop.cancel();
    }

    /// A spooled file that is gone while storage has no such object is lost:
    /// it becomes a gap with its reason, and the next entry still goes up.
    #[tokio::test]
    async fn an_entry_whose_file_vanished_becomes_a_gap_and_the_rest_go_up() {
        let root = tempfile::tempdir().unwrap();
        let (spool, store) = spool_of_two(root.path()).await;
        std::fs::remove_file(&spool.entries()[0].path).unwrap();
        let (mut rx, stop) = start(&spool, &store);
        match next(&mut rx).await {
            Fetched::SpoolLost { row, error } => {
                assert_eq!(row.media_sequence, 1);
                assert!(error.contains("vanished"), "{error}");
            }
            _ => panic!("a vanished spooled segment must be reported lost"),
        }
        match next(&mut rx).await {
            Fetched::Unspooled { row } => assert_eq!(row.media_sequence, 2),
            _ => panic!("the entry behind a lost one must still be uploaded"),
        }
        assert!(spool.is_empty());
        stop.cancel();
    }
}
