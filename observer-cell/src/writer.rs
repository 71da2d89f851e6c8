//! The observer's database side, in its own task so that a slow or absent
//! Postgres never stalls recording: ledger rows and heartbeats queue here and
//! are flushed, in order and in batches, whenever the database answers.
//!
//! Errors are classified. A fenced write stops everything at once. A row the
//! database refuses for what it holds is logged and replaced by a gap row
//! with the reason, so it never blocks the rows after it or the heartbeats.
//! Anything else (Postgres down, a query that does not answer within
//! [`QUERY_TIMEOUT`], as on a half-open connection) keeps the rows queued
//! and is retried every second.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use colony::exit::{Classify, ErrorClass};
use colony::recording::{Ledger, LedgerError, LedgerRow, Progress, RecordingState};

/// Longest wait for one statement; past it the connection is given up and
/// the work retried.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Rows written per statement.
const BATCH: usize = 256;

pub enum Message {
    Row(LedgerRow),
    /// Progress, the recording's state, and whether the cell has caught up.
    Heartbeat(Progress, RecordingState, bool),
    /// Write everything queued, then answer.
    Flush {
        reply: oneshot::Sender<Result<(), LedgerError>>,
    },
    /// Write everything queued and close the recording; answer with the
    /// enqueued jobs and the totals the ledger holds.
    Finalize {
        state: RecordingState,
        reply: oneshot::Sender<Result<(Vec<i64>, Progress), LedgerError>>,
    },
}

pub struct Writer {
    ledger: Ledger,
    cell_id: uuid::Uuid,
    /// When Postgres last accepted a fenced write: the cell's lease was valid then.
    confirmed: Arc<Mutex<Instant>>,
    pending: VecDeque<LedgerRow>,
    heartbeat: Option<(Progress, RecordingState, bool)>,
    /// Postgres has the cell's `caught_up_at`.
    caught_up_told: bool,
    fenced: watch::Sender<bool>,
    db_down_since: Option<std::time::Instant>,
}

/// Run a ledger call under [`QUERY_TIMEOUT`].
async fn timed<T>(call: impl Future<Output = Result<T, LedgerError>>) -> Result<T, LedgerError> {
    tokio::time::timeout(QUERY_TIMEOUT, call).await.unwrap_or(Err(LedgerError::TimedOut(QUERY_TIMEOUT)))
}

impl Writer {
    pub fn spawn(
        ledger: Ledger,
        cell_id: uuid::Uuid,
        confirmed: Arc<Mutex<Instant>>,
    ) -> (mpsc::UnboundedSender<Message>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (fenced, fenced_rx) = watch::channel(false);
        let writer = Writer {
            ledger,
            cell_id,
            confirmed,
            pending: VecDeque::new(),
            heartbeat: None,
            caught_up_told: false,
            fenced,
            db_down_since: None,
        };
        tokio::spawn(writer.run(rx));
        (tx, fenced_rx)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            let mut control = None;
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(msg) => self.take(msg, &mut control),
                },
                _ = retry.tick() => {}
            }
            // Whatever else is queued goes in the same batch.
            while control.is_none()
                && let Ok(msg) = rx.try_recv()
            {
                self.take(msg, &mut control);
            }
            let flushed = match control {
                Some(Message::Finalize { state, reply }) => {
                    let _ = reply.send(self.finalize(state).await);
                    return;
                }
                Some(Message::Flush { reply }) => {
                    let result = self.flush().await;
                    let fenced = matches!(result, Err(LedgerError::Fenced { .. }));
                    let _ = reply.send(result);
                    !fenced
                }
                _ => !matches!(self.flush().await, Err(LedgerError::Fenced { .. })),
            };
            if !flushed {
                let _ = self.fenced.send(true);
                return;
            }
        }
    }

    /// Queue a row or a heartbeat; keep a control message for the caller.
    fn take(&mut self, msg: Message, control: &mut Option<Message>) {
        match msg {
            Message::Row(row) => self.pending.push_back(row),
            Message::Heartbeat(p, s, caught_up) => self.heartbeat = Some((p, s, caught_up)),
            other => *control = Some(other),
        }
    }

    /// Write what is queued; stop at the first database error and keep the rest.
    async fn flush(&mut self) -> Result<(), LedgerError> {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            let batch: Vec<LedgerRow> = self.pending.iter().take(n).cloned().collect();
            match timed(self.ledger.insert_batch(&batch)).await {
                Ok(_) => {
                    self.pending.drain(..n);
                    self.database_answered();
                }
                Err(LedgerError::Refused(_)) => self.one_by_one(n).await?,
                Err(e @ LedgerError::Fenced { .. }) => return Err(e),
                Err(e) => return Err(self.database_failed(e)),
            }
        }
        if let Some((progress, state, caught_up)) = self.heartbeat.take() {
            // Said once: the row keeps the first time.
            let tell = caught_up && !self.caught_up_told;
            match timed(self.ledger.heartbeat(self.cell_id, &progress, state, tell)).await {
                Ok(()) => {
                    self.caught_up_told |= tell;
                    self.database_answered()
                }
                Err(e @ LedgerError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    self.heartbeat.get_or_insert((progress, state, caught_up));
                    return Err(self.database_failed(e));
                }
            }
        }
        Ok(())
    }

    /// A batch held a row the database refuses: write the first `n` rows one
    /// at a time, and put a gap with the reason where a row is refused.
    async fn one_by_one(&mut self, n: usize) -> Result<(), LedgerError> {
        for _ in 0..n {
            let Some(row) = self.pending.front().cloned() else { break };
            match timed(self.ledger.insert(&row)).await {
                Ok(_) => {}
                Err(LedgerError::Refused(e)) => {
                    let why = db_message(&e);
                    error!(epoch = row.epoch, seq = row.media_sequence, error = %why, "the ledger refused a row; recording a gap in its place");
                    let gap = LedgerRow::gap(
                        row.epoch.max(0) as u32,
                        row.media_sequence.max(0) as u64,
                        1,
                        if row.duration_secs.is_finite() { row.duration_secs.max(0.0) } else { 0.0 },
                        row.source,
                    )
                    .because(format!("the ledger refused this segment's row: {why}"));
                    match timed(self.ledger.insert(&gap)).await {
                        Ok(_) => {}
                        Err(LedgerError::Refused(e)) => {
                            error!(epoch = row.epoch, seq = row.media_sequence, error = %db_message(&e), "the ledger refused the gap row too; dropping it")
                        }
                        Err(e @ LedgerError::Fenced { .. }) => return Err(e),
                        Err(e) => return Err(self.database_failed(e)),
                    }
                }
                Err(e @ LedgerError::Fenced { .. }) => return Err(e),
                Err(e) => return Err(self.database_failed(e)),
            }
            self.pending.pop_front();
        }
        self.database_answered();
        Ok(())
    }

    fn database_failed(&mut self, e: LedgerError) -> LedgerError {
        if self.db_down_since.is_none() {
            warn!(error = %colony::error_chain(&e), queued = self.pending.len(), "postgres unavailable; recording goes on and ledger rows are buffered");
            self.db_down_since = Some(std::time::Instant::now());
        }
        e
    }

    fn database_answered(&mut self) {
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if let Some(since) = self.db_down_since.take() {
            info!(after = ?since.elapsed(), queued = self.pending.len(), "postgres is back; flushing buffered ledger rows");
        }
    }

    async fn finalize(&mut self, state: RecordingState) -> Result<(Vec<i64>, Progress), LedgerError> {
        loop {
            match self.flush().await {
                Ok(()) => break,
                Err(e @ LedgerError::Fenced { .. }) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let closed = loop {
            match timed(self.ledger.finalize(state)).await {
                Err(e) if e.class() == ErrorClass::Transient => tokio::time::sleep(Duration::from_secs(1)).await,
                other => break other?,
            }
        };
        // The recording is closed; now the cell leaves. If Postgres will not
        // take it, the mothership buries the silent cell later: nothing is lost.
        for _ in 0..10 {
            match tokio::time::timeout(
                Duration::from_secs(5),
                colony::cells::mark_exited(self.ledger.pool(), self.cell_id),
            )
            .await
            {
                Ok(Ok(())) => break,
                Ok(Err(e)) => warn!(error = %e, "could not mark the cell exited; retrying"),
                Err(_) => warn!("marking the cell exited got no answer; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(closed)
    }
}

/// What the database said, without the driver's wrapping.
fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}
