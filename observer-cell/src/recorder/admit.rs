//! Admission: the assignment a launcher hands a cell is checked against the
//! recording row before anything is written. A wrong assignment is the
//! launcher's configuration (exit 2); an older lease token or a closed
//! recording ends the cell at once, having written nothing.

use sqlx::PgPool;
use tracing::{info, warn};

use super::RecordingEnd;
use crate::args::ObserverArgs;
use colony::channel::{self, Channel};
use colony::exit::{Classify, ErrorClass};
use colony::recording::RecordingState;
use colony::storage::ObjectKey;

/// The recording row a cell was started for.
pub(super) struct Admitted {
    pub(super) channel: Channel,
    pub(super) prefix: ObjectKey,
    pub(super) db_epoch: i32,
}

/// An assignment that cannot be recorded: the launcher's configuration is
/// wrong (exit 2), or Postgres could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdmitError {
    #[error("recording {0} (OBSERVER_RECORDING_ID) does not exist")]
    NoRecording(i64),
    #[error("recording {recording} belongs to channel {owner}, not OBSERVER_CHANNEL_ID {channel}")]
    OtherChannel { recording: i64, owner: i64, channel: i64 },
    #[error("lease token {ours} is newer than the recording's {current}")]
    FutureToken { ours: i64, current: i64 },
    #[error("channel {0} does not exist")]
    NoChannel(i64),
    #[error("the recording's storage prefix")]
    BadPrefix(#[source] colony::storage::StorageError),
    #[error("loading the assignment")]
    Db(#[from] sqlx::Error),
}

impl Classify for AdmitError {
    fn class(&self) -> ErrorClass {
        match self {
            AdmitError::Db(_) => ErrorClass::Transient,
            AdmitError::NoRecording(_)
            | AdmitError::OtherChannel { .. }
            | AdmitError::FutureToken { .. }
            | AdmitError::NoChannel(_)
            | AdmitError::BadPrefix(_) => ErrorClass::Config,
        }
    }
}

/// Check the assignment against the recording row: it must exist, belong to
/// the channel, carry our token and still be open.
pub(super) async fn admit(args: &ObserverArgs, pool: &PgPool) -> Result<Result<Admitted, RecordingEnd>, AdmitError> {
    let row: Option<(i64, RecordingState, i64, i32, String)> =
        sqlx::query_as("SELECT channel_id, state, lease_token, epoch, storage_prefix FROM recordings WHERE id = $1")
            .bind(args.recording_id)
            .fetch_optional(pool)
            .await?;
    let Some((channel_id, state, token, db_epoch, storage_prefix)) = row else {
        return Err(AdmitError::NoRecording(args.recording_id));
    };
    if channel_id != args.channel_id {
        return Err(AdmitError::OtherChannel {
            recording: args.recording_id,
            owner: channel_id,
            channel: args.channel_id,
        });
    }
    if token > args.lease_token {
        warn!(current = token, ours = args.lease_token, "recording already handed to another cell");
        return Ok(Err(RecordingEnd::Fenced));
    }
    if token < args.lease_token {
        return Err(AdmitError::FutureToken { ours: args.lease_token, current: token });
    }
    if !state.is_open() {
        info!(?state, "recording already closed; nothing to do");
        return Ok(Err(RecordingEnd::AlreadyClosed(state)));
    }
    let channel = channel::get(pool, channel_id).await?.ok_or(AdmitError::NoChannel(channel_id))?;
    let prefix = ObjectKey::parse(&storage_prefix).map_err(AdmitError::BadPrefix)?;
    Ok(Ok(Admitted { channel, prefix, db_epoch }))
}
