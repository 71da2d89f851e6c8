//! Least privilege in Postgres: one role per part of the colony.
//!
//! A harvest cell on a volunteer's laptop holds a database URL. If that URL
//! is the owner's, whoever holds the laptop holds the colony: they can read
//! every webhook's secret and the platform tokens, and write a channel row.
//! So each part connects as a login of its own group role, with only the
//! grants its statements need:
//!
//! | role | may | may not |
//! |---|---|---|
//! | `colony_mothership` | every row of every table (the tick, the CLI) | change the schema (the owner migrates) |
//! | `colony_observer` | read channels; write its recordings, ledger, chat, cell row; queue post-processing | write channels, read webhooks or platform tokens, read decisions |
//! | `colony_harvest` | claim and run jobs; write recordings, ledger, cell rows | write channels, read webhooks or platform tokens, read decisions |
//! | `colony_web` | read the read models; add and enable channels, retry and cancel jobs | read webhook secrets or platform tokens, write recordings or the ledger |
//!
//! The group roles are `NOLOGIN`; the URLs the mothership hands its cells
//! (`COLONY_OBSERVER_DATABASE_URL`, `COLONY_HARVEST_DATABASE_URL`) and the
//! dashboard's (`COLONY_WEB_DATABASE_URL`) name login users that
//! `mothership db roles` makes members. Grants are per database and are
//! made again by every `mothership migrate`, so a new table never goes
//! ungranted; every run first revokes what a role holds, so a grant that
//! is no longer wanted goes too.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use colony::config::DatabaseUrl;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::{Executor, PgConnection, PgPool};

/// A part of the colony, and its Postgres group role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Mothership,
    Observer,
    Harvest,
    Web,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Mothership, Role::Observer, Role::Harvest, Role::Web];

    /// The group role's name in Postgres.
    pub fn name(self) -> &'static str {
        match self {
            Role::Mothership => "colony_mothership",
            Role::Observer => "colony_observer",
            Role::Harvest => "colony_harvest",
            Role::Web => "colony_web",
        }
    }

    /// The variable naming the URL this role's login connects with.
    pub fn url_var(self) -> &'static str {
        match self {
            Role::Mothership => "COLONY_MOTHERSHIP_DATABASE_URL",
            Role::Observer => "COLONY_OBSERVER_DATABASE_URL",
            Role::Harvest => "COLONY_HARVEST_DATABASE_URL",
            Role::Web => "COLONY_WEB_DATABASE_URL",
        }
    }

    /// The statements that give this role what it needs in the current
    /// database, after everything it held was revoked.
    fn grants(self) -> &'static [&'static str] {
        match self {
            Role::Mothership => &[
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO colony_mothership",
                "REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM colony_mothership",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO colony_mothership",
            ],
            Role::Observer => &[
                "GRANT SELECT ON _sqlx_migrations, channels, recordings, segments, cells, chapters, chat_chunks, \
                 chat_gaps, jobs TO colony_observer",
                "GRANT UPDATE ON recordings, segments TO colony_observer",
                "GRANT INSERT, DELETE ON segments TO colony_observer",
                "GRANT INSERT ON chapters, chat_chunks, chat_gaps, jobs TO colony_observer",
                // A chat gap that grows is one row, extended in place.
                "GRANT UPDATE (to_at) ON chat_gaps TO colony_observer",
                "GRANT INSERT, UPDATE ON cells TO colony_observer",
                "GRANT USAGE ON SEQUENCE job_lease_generation TO colony_observer",
            ],
            Role::Harvest => &[
                "GRANT SELECT ON _sqlx_migrations, channels, recordings, segments, cells, chapters, chat_chunks, \
                 chat_gaps, jobs TO colony_harvest",
                "GRANT INSERT, UPDATE, DELETE ON recordings, segments TO colony_harvest",
                "GRANT INSERT, UPDATE ON jobs, cells TO colony_harvest",
                "GRANT INSERT ON chapters TO colony_harvest",
                "GRANT USAGE ON SEQUENCE job_lease_generation TO colony_harvest",
            ],
            Role::Web => &[
                "GRANT SELECT ON _sqlx_migrations, colony, channels, recordings, segments, cells, chapters, \
                 chat_chunks, chat_gaps, jobs, decisions, ticks, metric_counters TO colony_web",
                "GRANT SELECT (id, url, events, format, created_at, enabled) ON webhooks TO colony_web",
                "GRANT INSERT ON channels TO colony_web",
                "GRANT UPDATE (enabled, probed_at, updated_at) ON channels TO colony_web",
                "GRANT INSERT, UPDATE ON jobs TO colony_web",
                "GRANT USAGE ON SEQUENCE job_lease_generation TO colony_web",
            ],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("{0}")]
    Refused(String),
    #[error("creating or granting the colony's roles failed (the user running this needs CREATEROLE)")]
    Db(#[from] sqlx::Error),
}

impl colony::exit::Classify for RolesError {
    fn class(&self) -> colony::exit::ErrorClass {
        match self {
            RolesError::Refused(_) => colony::exit::ErrorClass::Config,
            RolesError::Db(_) => colony::exit::ErrorClass::Transient,
        }
    }
}

/// Errors two sessions making the same role at once may see; each is tried again.
fn is_race(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code()).unwrap_or_default();
    // unique_violation, duplicate_object, serialization_failure, and
    // "tuple concurrently updated" (internal_error).
    matches!(code.as_ref(), "23505" | "42710" | "40001" | "XX000")
}

async fn retrying(conn: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        match conn.execute(statement).await {
            Ok(_) => return Ok(()),
            Err(e) if is_race(&e) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Create the four `NOLOGIN` group roles where missing (they are the
/// cluster's, shared by its databases).
pub async fn ensure_group_roles(conn: &mut PgConnection) -> Result<(), RolesError> {
    for role in Role::ALL {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role.name())
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            let create = format!("CREATE ROLE {} NOLOGIN", role.name());
            match conn.execute(create.as_str()).await {
                Ok(_) => {}
                Err(e) if is_race(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Do the group roles exist in this cluster?
pub async fn group_roles_exist(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)")
        .bind(Role::ALL.map(Role::name).to_vec())
        .fetch_one(pool)
        .await?;
    Ok(n == Role::ALL.len() as i64)
}

/// Give each group role exactly its grants in the current database: revoke
/// everything it holds on the schema's tables and sequences, then grant,
/// in one transaction.
pub async fn grant(pool: &PgPool) -> Result<(), RolesError> {
    let mut tx = pool.begin().await?;
    for role in Role::ALL {
        let name = role.name();
        for statement in [
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}"),
            format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}"),
            format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {name}"),
        ] {
            tx.execute(statement.as_str()).await?;
        }
        for statement in role.grants() {
            tx.execute(*statement).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// What happened to one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Created,
    Updated,
}

/// Make the user in `url` a login with the URL's password, a member of
/// `role` and of no other colony role. Refused for the user running this
/// (the owner), a superuser, or a user that may create roles or databases:
/// such a login in a cell's hands would undo the point of the role.
pub async fn ensure_login(conn: &mut PgConnection, role: Role, url: &DatabaseUrl) -> Result<LoginOutcome, RolesError> {
    let options = url.connect_options();
    let user = options.get_username().to_owned();
    if user.is_empty() {
        return Err(RolesError::Refused(format!("{} names no user", role.url_var())));
    }
    let current: String = sqlx::query_scalar("SELECT current_user").fetch_one(&mut *conn).await?;
    if user == current {
        return Err(RolesError::Refused(format!(
            "{} names {user}, the user this command runs as (the schema's owner): give {} a user of its own, \
             e.g. colony_{}_login",
            role.url_var(),
            role.name(),
            role.name().trim_start_matches("colony_")
        )));
    }
    if Role::ALL.iter().any(|r| r.name() == user) {
        return Err(RolesError::Refused(format!(
            "{} names the group role {user} itself: name a login user that will be made its member",
            role.url_var()
        )));
    }
    let existing: Option<(bool, bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(&user)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((superuser, createrole, createdb)) = existing
        && (superuser || createrole || createdb)
    {
        return Err(RolesError::Refused(format!(
            "{} names {user}, which may create roles or databases or is a superuser: use a plain login for {}",
            role.url_var(),
            role.name()
        )));
    }
    let password_clause = match password_of(url) {
        Some(p) => format!(" PASSWORD '{}'", scram_verifier(&p)),
        None => String::new(),
    };
    let ident: String = sqlx::query_scalar("SELECT quote_ident($1)").bind(&user).fetch_one(&mut *conn).await?;
    let outcome = if existing.is_some() {
        retrying(conn, &format!("ALTER ROLE {ident} LOGIN INHERIT{password_clause}")).await?;
        LoginOutcome::Updated
    } else {
        match conn.execute(format!("CREATE ROLE {ident} LOGIN INHERIT{password_clause}").as_str()).await {
            Ok(_) => LoginOutcome::Created,
            Err(e) if is_race(&e) => LoginOutcome::Updated,
            Err(e) => return Err(e.into()),
        }
    };
    for other in Role::ALL {
        let member: bool = sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
            .bind(&user)
            .bind(other.name())
            .fetch_one(&mut *conn)
            .await?;
        if other == role && !member {
            retrying(conn, &format!("GRANT {} TO {ident}", other.name())).await?;
        } else if other != role && member {
            retrying(conn, &format!("REVOKE {} FROM {ident}", other.name())).await?;
        }
    }
    Ok(outcome)
}

/// A password as Postgres stores it for SCRAM-SHA-256 (RFC 5802/7677), made
/// here so that the clear password never reaches the server's logs.
pub fn scram_verifier(password: &str) -> String {
    const ITERATIONS: u32 = 4096;
    let salt: [u8; 16] = rand::random();
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, ITERATIONS, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// The password a [`DatabaseUrl`] carries (`user:password@`, or
/// `?password=`), for making its login.
fn password_of(url: &DatabaseUrl) -> Option<String> {
    let parsed = url::Url::parse(url.expose()).ok()?;
    let from_query = || parsed.query_pairs().find(|(k, _)| k == "password").map(|(_, v)| v.into_owned());
    match parsed.password() {
        Some(p) => percent_encoding::percent_decode_str(p).decode_utf8().ok().map(|p| p.into_owned()),
        None => from_query(),
    }
    .filter(|p| !p.is_empty())
}

/// `mothership db roles`.
#[derive(Debug, Clone, clap::Args)]
pub struct RolesArgs {
    /// Run as the schema's owner, with CREATEROLE (the user that runs `mothership migrate`).
    #[command(flatten)]
    pub db: colony::config::DatabaseArgs,
    /// The login the tick and the CLI may use instead of the owner (colony_mothership).
    #[arg(long, env = "COLONY_MOTHERSHIP_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub mothership_database_url: Option<DatabaseUrl>,
    /// The login observer cells connect with (colony_observer); the mothership hands it to them.
    #[arg(long, env = "COLONY_OBSERVER_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub observer_database_url: Option<DatabaseUrl>,
    /// The login harvest cells connect with (colony_harvest), here and on joining machines.
    #[arg(long, env = "COLONY_HARVEST_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub harvest_database_url: Option<DatabaseUrl>,
    /// The login the dashboard connects with (colony_web).
    #[arg(long, env = "COLONY_WEB_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub web_database_url: Option<DatabaseUrl>,
}

impl RolesArgs {
    fn url(&self, role: Role) -> Option<&DatabaseUrl> {
        match role {
            Role::Mothership => self.mothership_database_url.as_ref(),
            Role::Observer => self.observer_database_url.as_ref(),
            Role::Harvest => self.harvest_database_url.as_ref(),
            Role::Web => self.web_database_url.as_ref(),
        }
    }
}

/// Create or update the group roles, their grants in this database, and a
/// login for each role URL given; print what was done.
pub async fn run(args: &RolesArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let pool = colony::db::connect(&args.db).await?;
    let mut conn = pool.acquire().await.context("connecting to postgres")?;
    ensure_group_roles(&mut conn).await.map_err(colony::exit::classified)?;
    grant(&pool).await.map_err(colony::exit::classified)?;
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *conn).await?;
    println!("roles {} are granted what each needs in database {database}", Role::ALL.map(Role::name).join(", "));
    for role in Role::ALL {
        match args.url(role) {
            Some(url) => {
                let outcome = ensure_login(&mut conn, role, url).await.map_err(colony::exit::classified)?;
                let user = url.connect_options().get_username().to_owned();
                let done = match outcome {
                    LoginOutcome::Created => "created",
                    LoginOutcome::Updated => "updated",
                };
                println!("  {:<18} login {user} {done} ({})", role.name(), role.url_var());
            }
            None => println!("  {:<18} no login made: {} is not set", role.name(), role.url_var()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier Postgres would make, in its format; the key parts come
    /// from RFC 7677's construction (checked end to end by tests/roles.rs,
    /// which logs in with scram-sha-256).
    #[test]
    fn scram_verifiers_have_postgres_format_and_fresh_salts() {
        let a = scram_verifier("hunter2");
        let b = scram_verifier("hunter2");
        assert_ne!(a, b);
        let rest = a.strip_prefix("SCRAM-SHA-256$4096:").unwrap();
        let (salt, keys) = rest.split_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        assert_eq!(STANDARD.decode(salt).unwrap().len(), 16);
        assert_eq!(STANDARD.decode(stored).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(server).unwrap().len(), 32);
        assert!(!a.contains("hunter2"));
    }

    #[test]
    fn passwords_come_from_the_url() {
        let url = DatabaseUrl::parse("postgres://u:p%40ss@h/db").unwrap();
        assert_eq!(password_of(&url).as_deref(), Some("p@ss"));
        let url = DatabaseUrl::parse("postgres://u@h/db?password=x").unwrap();
        assert_eq!(password_of(&url).as_deref(), Some("x"));
        assert_eq!(password_of(&DatabaseUrl::parse("postgres://u@h/db").unwrap()), None);
    }
}
