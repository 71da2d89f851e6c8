//! Finalizing: when the broadcast has ended (or the cell is told to stop),
//! let the fetches and the spool drain within a deadline, record what could
//! not be stored as explicit gaps, flush the ledger, close the recording
//! (fenced) and publish its VOD playlist, or queue a repair that rebuilds it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Fetched, Recorder, RecordingEnd};
use crate::writer::Message;
use colony::exit::{Classify, ErrorClass};
use colony::recording::{self, LedgerError, RecordingState};

impl Recorder {
    /// Flush everything and close the recording, within `deadline`.
    pub(super) async fn finalize(
        &mut self,
        state: RecordingState,
        deadline: Instant,
        done_rx: &mut mpsc::UnboundedReceiver<Fetched>,
        fenced: &mut watch::Receiver<bool>,
    ) -> RecordingEnd {
        // Queued and running fetches finish, and the spool drains, or the deadline passes.
        while !self.fetches.is_empty() || !self.queued.is_empty() || !self.spool.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = fenced.changed() => return RecordingEnd::Fenced,
                Some(done) = done_rx.recv() => self.on_fetched(done),
                Some(_) = self.fetches.join_next(), if !self.fetches.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            self.pump().await;
        }
        self.fetches.abort_all();
        self.queued.clear();
        self.stop_uploader().await;
        while let Ok(done) = done_rx.try_recv() {
            self.on_fetched(done);
        }
        self.close_epoch(true);
        let mut state = state;
        if !self.spool.is_empty() {
            let host = colony::hostname();
            error!(
                spooled = self.spool.len(), dir = %self.spool.dir().display(),
                "object storage did not come back in time; the spooled segments are recorded as gaps and their files stay in the spool"
            );
            for entry in self.spool.entries() {
                let Some(row) = entry.row else { continue };
                let reason = format!(
                    "object storage was unavailable until the finalize deadline; the segment is kept in the spool at {} on host {host}",
                    entry.path.display()
                );
                self.record(row.into_gap(reason));
            }
            state = RecordingState::Interrupted;
        }
        if let Some(h) = self.playlist.writing.take() {
            let _ = h.await;
        }
        // Every row in the ledger first: the VOD playlist is rendered from it.
        loop {
            let (reply, answer) = oneshot::channel();
            let _ = self.db.send(Message::Flush { reply });
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
            match tokio::time::timeout(remaining, answer).await {
                Ok(Ok(Ok(()))) => break,
                Ok(Ok(Err(LedgerError::Fenced { .. }))) => return RecordingEnd::Fenced,
                Ok(Ok(Err(_))) if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
                _ => {
                    error!(
                        "postgres did not take the final ledger rows in time; the recording stays open for a replacement"
                    );
                    return RecordingEnd::NotFinalized;
                }
            }
        }
        self.publish_and_close(state, deadline).await
    }

    /// Close the recording (fenced), then write its VOD playlist: only the
    /// cell that still holds the recording may write it, so a cell that was
    /// replaced never overwrites its replacement's playlist.
    async fn publish_and_close(&mut self, state: RecordingState, deadline: Instant) -> RecordingEnd {
        let ledger = recording::Ledger::new(self.pool.clone(), self.args.recording_id, self.args.lease_token);
        if let Some(adopter) = &self.adopter {
            match adopter.adopt_into_gaps(&ledger).await {
                Ok(0) => {}
                Ok(n) => info!(segments = n, "adopted segments stored after their gap was written"),
                Err(LedgerError::Fenced { .. }) => return RecordingEnd::Fenced,
                Err(e) => warn!(error = %colony::error_chain(&e), "could not look for stored segments behind gap rows"),
            }
        }
        let (reply, answer) = oneshot::channel();
        let _ = self.db.send(Message::Finalize { state, reply });
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        let outcome = match tokio::time::timeout(remaining, answer).await {
            Ok(Ok(Ok((jobs, progress)))) => {
                info!(?state, segments = progress.segments, gaps = progress.gaps, bytes = progress.bytes,
                      duration_secs = format!("{:.1}", progress.duration_secs), jobs = ?jobs, "recording finalized");
                RecordingEnd::Finalized(state)
            }
            Ok(Ok(Err(LedgerError::Fenced { .. }))) => return RecordingEnd::Fenced,
            Ok(Ok(Err(e))) => {
                error!(error = %colony::error_chain(&e), "finalizing the recording failed");
                return RecordingEnd::NotFinalized;
            }
            _ => {
                error!(
                    "postgres did not take the final ledger rows in time; the recording stays open for a replacement"
                );
                return RecordingEnd::NotFinalized;
            }
        };
        let deadline = deadline.max(Instant::now() + Duration::from_secs(30));
        loop {
            match recording::publish_vod(&ledger, self.store.as_ref(), &self.prefix, self.args.vod).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline && e.class() == ErrorClass::Transient => {
                    warn!(error = %colony::error_chain(&e), "writing the VOD playlist failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    error!(error = %colony::error_chain(&e), "could not write the VOD playlist; a repair job rebuilds it from the ledger");
                    let recording = colony::queue::RecordingArgs { recording_id: self.args.recording_id };
                    let repair = colony::queue::JobArgs::Repair(recording).job();
                    if let Err(e) = colony::queue::Queue::new(self.pool.clone()).enqueue(&repair).await {
                        error!(error = %colony::error_chain(&e), "could not enqueue the repair job either; run it by hand");
                    }
                    break;
                }
            }
        }
        outcome
    }
}
