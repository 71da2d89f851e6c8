//! The error every operator command returns (`channel`, `job`, `backfill`
//! and the read-only views), and the lookup they share. The commands live
//! beside what they touch: [`crate::channels`] writes channels,
//! [`crate::views`] reads what `status`, `cells`, `decisions` and `jobs`
//! show, [`crate::backfill`] queues downloads, and
//! [`crate::platform_api::backfill`] asks a platform for past broadcasts.

use sqlx::PgPool;

use colony::exit::{Classify, ErrorClass};
use colony::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The operator's input was wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("no channel named '{0}'; `mothership channel list` shows them")]
    NoChannel(String),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("job queue error")]
    Queue(#[from] QueueError),
}

/// A channel's id by its login.
pub(crate) async fn channel_id(pool: &PgPool, login: &str) -> Result<i64, AdminError> {
    sqlx::query_scalar("SELECT id FROM channels WHERE login = $1")
        .bind(login)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| AdminError::NoChannel(login.to_owned()))
}

/// Operator mistakes exit 2 with their one line; the rest are failures.
impl Classify for AdminError {
    fn class(&self) -> ErrorClass {
        match self {
            AdminError::Invalid(_) | AdminError::NoChannel(_) => ErrorClass::Config,
            AdminError::Db(_) => ErrorClass::Transient,
            AdminError::Queue(e) => e.class(),
        }
    }
}
