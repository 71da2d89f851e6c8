//! The observer's database side, in its own task so that a slow or absent
//! Postgres never stalls recording: ledger rows and heartbeats queue here and
//! are flushed, in order, whenever the database answers. A fenced write stops
//! everything at once.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::recording::{Ledger, LedgerError, LedgerRow, Progress, RecordingState};

pub enum Message {
    Row(LedgerRow),
    Heartbeat(Progress, RecordingState),
    /// Flush everything, close the recording; answer with the enqueued jobs.
    Finalize {
        progress: Progress,
        state: RecordingState,
        reply: oneshot::Sender<Result<Vec<i64>, LedgerError>>,
    },
}

pub struct Writer {
    ledger: Ledger,
    cell_id: uuid::Uuid,
    pending: VecDeque<LedgerRow>,
    heartbeat: Option<(Progress, RecordingState)>,
    fenced: watch::Sender<bool>,
    db_down_since: Option<std::time::Instant>,
}

impl Writer {
    pub fn spawn(ledger: Ledger, cell_id: uuid::Uuid) -> (mpsc::UnboundedSender<Message>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (fenced, fenced_rx) = watch::channel(false);
        let writer = Writer { ledger, cell_id, pending: VecDeque::new(), heartbeat: None, fenced, db_down_since: None };
        tokio::spawn(writer.run(rx));
        (tx, fenced_rx)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(Message::Row(row)) => self.pending.push_back(row),
                    Some(Message::Heartbeat(p, s)) => self.heartbeat = Some((p, s)),
                    Some(Message::Finalize { progress, state, reply }) => {
                        let result = self.finalize(progress, state).await;
                        let _ = reply.send(result);
                        return;
                    }
                },
                _ = retry.tick() => {}
            }
            if let Err(LedgerError::Fenced { .. }) = self.flush().await {
                let _ = self.fenced.send(true);
                return;
            }
        }
    }

    /// Write what is queued; stop at the first database error and keep the rest.
    async fn flush(&mut self) -> Result<(), LedgerError> {
        while let Some(row) = self.pending.front() {
            match self.ledger.insert(row).await {
                Ok(_) => {
                    self.pending.pop_front();
                    self.database_answered();
                }
                Err(LedgerError::Db(e)) => return Err(self.database_failed(e)),
                Err(fenced) => return Err(fenced),
            }
        }
        if let Some((progress, state)) = self.heartbeat.take() {
            match self.ledger.heartbeat(self.cell_id, &progress, state).await {
                Ok(()) => self.database_answered(),
                Err(LedgerError::Db(e)) => {
                    self.heartbeat.get_or_insert((progress, state));
                    return Err(self.database_failed(e));
                }
                Err(fenced) => return Err(fenced),
            }
        }
        Ok(())
    }

    fn database_failed(&mut self, e: sqlx::Error) -> LedgerError {
        if self.db_down_since.is_none() {
            warn!(error = %e, queued = self.pending.len(), "postgres unavailable; recording goes on and ledger rows are buffered");
            self.db_down_since = Some(std::time::Instant::now());
        }
        LedgerError::Db(e)
    }

    fn database_answered(&mut self) {
        if let Some(since) = self.db_down_since.take() {
            info!(after = ?since.elapsed(), queued = self.pending.len(), "postgres is back; flushing buffered ledger rows");
        }
    }

    async fn finalize(&mut self, progress: Progress, state: RecordingState) -> Result<Vec<i64>, LedgerError> {
        loop {
            match self.flush().await {
                Ok(()) => break,
                Err(LedgerError::Db(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(fenced) => return Err(fenced),
            }
        }
        loop {
            match self.ledger.finalize(self.cell_id, &progress, state).await {
                Err(LedgerError::Db(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                other => return other,
            }
        }
    }
}
