//! Waking idle workers: a LISTEN on the channel the jobs table NOTIFYs in the
//! inserting transaction, with polling as the fallback when the notification
//! connection is down or a NOTIFY was missed.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tracing::debug;

pub const CHANNEL: &str = "colony_jobs";

/// Why [`JobWaker::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Notified,
    PollInterval,
}

pub struct JobWaker {
    listener: Option<PgListener>,
    pool: PgPool,
}

impl JobWaker {
    /// Listen for new jobs. A failure to listen is not fatal: the waker polls.
    pub async fn new(pool: &PgPool) -> Self {
        let listener = Self::listen(pool).await;
        Self { listener, pool: pool.clone() }
    }

    /// Bounded: a connection a partition left half-open never answers.
    async fn listen(pool: &PgPool) -> Option<PgListener> {
        let listen = async {
            let mut listener = PgListener::connect_with(pool).await.ok()?;
            listener.listen(CHANNEL).await.ok()?;
            Some(listener)
        };
        tokio::time::timeout(Duration::from_secs(10), listen).await.ok().flatten()
    }

    /// Wait until a job is enqueued or `poll` elapses, whichever comes first.
    pub async fn wait(&mut self, poll: Duration) -> Wake {
        if self.listener.is_none() {
            self.listener = Self::listen(&self.pool).await;
        }
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(poll).await;
            return Wake::PollInterval;
        };
        match tokio::time::timeout(poll, listener.recv()).await {
            Ok(Ok(_)) => {
                // One wake-up is enough for a burst of inserts.
                while listener.next_buffered().is_some() {}
                Wake::Notified
            }
            Ok(Err(err)) => {
                debug!(error = %err, "job notifications lost; falling back to polling");
                self.listener = None;
                Wake::PollInterval
            }
            Err(_) => Wake::PollInterval,
        }
    }
}
