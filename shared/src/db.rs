//! Connecting to Postgres and guarding the schema version.
//!
//! Every binary embeds the migrations it was built with. Before doing any work
//! it checks that the database carries exactly that schema: a missing, older or
//! newer schema is refused with one line that tells the operator what to do,
//! because a cell writing to a schema it does not understand corrupts the
//! archive quietly.

use std::time::Duration;

pub use sqlx::PgPool as Pool;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tracing::info;

use crate::config::{DatabaseArgs, DatabaseUrl};

/// The schema this build understands.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to postgres at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the database at {url} has no colony schema; run `mothership migrate` first")]
    SchemaMissing { url: String },
    #[error(
        "the database schema is at version {database} but this binary knows only up to {binary}; \
         upgrade this binary to the version the mothership runs"
    )]
    SchemaNewer { database: i64, binary: i64 },
    #[error(
        "the database schema is at version {database}, older than this binary's {binary}; run `mothership migrate`"
    )]
    SchemaOlder { database: i64, binary: i64 },
    #[error("migration {version} failed part-way in an earlier run; fix the cause and run `mothership migrate` again")]
    SchemaDirty { version: i64 },
    #[error("migration {version} in the database differs from the one this binary was built with")]
    SchemaChecksum { version: i64 },
    #[error("applying migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// True for errors the operator fixes by changing configuration or running a
    /// command, as opposed to a database that is down.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, DbError::Connect { .. } | DbError::Query(_) | DbError::Migrate(_))
    }
}

/// Open a pool without checking the schema and without a statement timeout
/// (used by `migrate` itself, whose statements may take long on big tables).
pub async fn connect_unchecked(args: &DatabaseArgs) -> Result<PgPool, DbError> {
    connect_url(&args.database_url, args.db_max_connections, args.db_connect_timeout.into(), None).await
}

/// Open a pool. With `statement_timeout`, Postgres cancels any statement of
/// these connections that runs longer.
pub async fn connect_url(
    url: &DatabaseUrl,
    max_connections: u32,
    timeout: Duration,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, DbError> {
    connect_url_with(url, max_connections, timeout, statement_timeout, None).await
}

/// How long a cell's connection may sit inside a transaction between two
/// statements before Postgres ends its session. Every transaction a cell
/// opens is a few statements with no other I/O between them; a cell frozen
/// in one (SIGSTOP, a paused VM, a partition mid-transaction) would hold
/// its recording's row lock forever, and its replacement's hand-over
/// (`assign_live`) would wait on it.
pub const CELL_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

async fn connect_url_with(
    url: &DatabaseUrl,
    max_connections: u32,
    timeout: Duration,
    statement_timeout: Option<Duration>,
    idle_in_transaction: Option<Duration>,
) -> Result<PgPool, DbError> {
    let mut options = url.connect_options();
    if let Some(limit) = statement_timeout.filter(|t| !t.is_zero()) {
        options = options.options([("statement_timeout", format!("{}ms", limit.as_millis()))]);
    }
    if let Some(limit) = idle_in_transaction {
        options = options.options([("idle_in_transaction_session_timeout", format!("{}ms", limit.as_millis()))]);
    }
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { url: url.redacted(), source })
}

/// Open a pool, with `--statement-timeout` on every statement, and refuse a
/// database whose schema is not this binary's.
pub async fn connect(args: &DatabaseArgs) -> Result<PgPool, DbError> {
    connect_checked(args, None).await
}

async fn connect_checked(args: &DatabaseArgs, idle_in_transaction: Option<Duration>) -> Result<PgPool, DbError> {
    let pool = connect_url_with(
        &args.database_url,
        args.db_max_connections,
        args.db_connect_timeout.into(),
        Some(args.statement_timeout.into()),
        idle_in_transaction,
    )
    .await?;
    check_schema(&pool, &args.database_url.redacted()).await?;
    Ok(pool)
}

/// [`connect`] for a cell: a Postgres it cannot reach yet (a partition, a
/// restart, a half-open route) is tried again with backoff until `grace`
/// has passed since the first try. A schema that is not this binary's is
/// refused at once: waiting does not fix configuration. Its sessions end
/// after [`CELL_IDLE_IN_TRANSACTION`] idle inside a transaction.
pub async fn connect_within(args: &DatabaseArgs, grace: Duration) -> Result<PgPool, DbError> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut wait = Duration::from_millis(500);
    let mut tries = 0u32;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let connecting = connect_checked(args, Some(CELL_IDLE_IN_TRANSACTION));
        let attempt = match tokio::time::timeout(left.max(Duration::from_secs(1)), connecting).await {
            Ok(attempt) => attempt,
            Err(_) => Err(DbError::Connect { url: args.database_url.redacted(), source: sqlx::Error::PoolTimedOut }),
        };
        match attempt {
            Ok(pool) => {
                if tries > 1 {
                    info!(tries, "connected to postgres");
                }
                return Ok(pool);
            }
            Err(e) if !worth_waiting_for(&e) => return Err(e),
            Err(e) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                if tries == 1 {
                    tracing::warn!(
                        error = %crate::error_chain(&e),
                        grace = %humantime::format_duration(grace),
                        "cannot reach postgres yet; trying again with backoff within the start grace"
                    );
                }
                tokio::time::sleep(wait.min(left)).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Would trying again fix it? A route or a server that is not there yet
/// (I/O, a timeout, Postgres starting up or out of connections) may come
/// back; a wrong password, a missing database or a foreign schema will not.
fn worth_waiting_for(e: &DbError) -> bool {
    let source = match e {
        DbError::Connect { source, .. } | DbError::Query(source) => source,
        _ => return false,
    };
    match source {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // Class 57: operator intervention (starting up, shutting down); 53: out of resources.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("53")),
        _ => false,
    }
}

/// The newest migration version this binary knows.
pub fn binary_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Where the database stands relative to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub database: Option<i64>,
    pub binary: i64,
    pub pending: Vec<i64>,
}

async fn applied_migrations(pool: &PgPool) -> Result<Option<Vec<(i64, bool, Vec<u8>)>>, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await?;
    Ok(Some(rows))
}

/// Compare the database's applied migrations with this binary's, without
/// changing anything.
pub async fn schema_status(pool: &PgPool) -> Result<SchemaStatus, DbError> {
    let binary = binary_version();
    let Some(applied) = applied_migrations(pool).await? else {
        return Ok(SchemaStatus { database: None, binary, pending: MIGRATOR.iter().map(|m| m.version).collect() });
    };
    if let Some((version, ..)) = applied.iter().find(|(_, success, _)| !success) {
        return Err(DbError::SchemaDirty { version: *version });
    }
    for (version, _, checksum) in &applied {
        if let Some(known) = MIGRATOR.iter().find(|m| m.version == *version)
            && known.checksum.as_ref() != checksum.as_slice()
        {
            return Err(DbError::SchemaChecksum { version: *version });
        }
    }
    let database = applied.iter().map(|(v, ..)| *v).max();
    let pending = MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.iter().any(|(a, ..)| a == v)).collect();
    Ok(SchemaStatus { database, binary, pending })
}

/// Refuse a database that lacks the schema, or carries an older or newer one.
pub async fn check_schema(pool: &PgPool, redacted_url: &str) -> Result<(), DbError> {
    let status = schema_status(pool).await?;
    match status.database {
        None => Err(DbError::SchemaMissing { url: redacted_url.to_owned() }),
        Some(database) if database > status.binary => Err(DbError::SchemaNewer { database, binary: status.binary }),
        Some(database) if !status.pending.is_empty() => Err(DbError::SchemaOlder { database, binary: status.binary }),
        Some(_) => Ok(()),
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<i64>,
    pub version: i64,
}

/// Apply pending migrations. Refuses a database newer than this binary rather
/// than guessing. Concurrent runs are serialised by sqlx's advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<MigrateReport, DbError> {
    let status = schema_status(pool).await?;
    if let Some(database) = status.database
        && database > status.binary
    {
        return Err(DbError::SchemaNewer { database, binary: status.binary });
    }
    MIGRATOR.run(pool).await.map_err(DbError::Migrate)?;
    for version in &status.pending {
        info!(version, "applied migration");
    }
    Ok(MigrateReport { applied: status.pending, version: status.binary })
}
