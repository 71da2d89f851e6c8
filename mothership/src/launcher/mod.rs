//! Launchers: one small trait, one implementation per backend (local
//! processes, Docker through bollard, AWS ECS through aws-sdk-ecs).
//!
//! A launcher only starts, lists and stops. Which cells should run is the
//! planner's business; the cell rows are the tick's. Everything a launcher
//! starts carries this colony's instance id and the cell's id (as labels,
//! tags or environment), so `list` finds exactly this colony's cells again.

pub mod docker;
pub mod ecs;
pub mod process;

use colony_vocab::{ChannelId, RecordingId};
use uuid::Uuid;

use colony_planner::model::{CellKind, Instance};

/// Label (or environment variable, for processes) naming the colony.
pub const LABEL_INSTANCE: &str = "colony.instance";
pub const LABEL_KIND: &str = "colony.cell.kind";
pub const LABEL_CELL: &str = "colony.cell.id";
pub const LABEL_CHANNEL: &str = "colony.channel";

/// One cell to start.
#[derive(Debug, Clone)]
pub struct CellSpec {
    pub cell_id: Uuid,
    pub kind: CellKind,
    /// The channel login, for observers (a label, and part of a name).
    pub channel: Option<String>,
    /// The whole environment contract for the cell, `COLONY_CELL_ID` included.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Refused(String),
    #[error("the {backend} backend failed to {what}")]
    Backend {
        backend: &'static str,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LaunchError {
    pub fn backend(
        backend: &'static str,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        LaunchError::Backend { backend, what: what.into(), source: source.into() }
    }
}

#[async_trait::async_trait]
pub trait Launcher: Send + Sync {
    /// `process`, `docker` or `ecs`, as stored in `cells.backend`.
    fn backend(&self) -> &'static str;
    /// Does `list` show a started cell at once? Local processes and Docker
    /// do; ECS is eventually consistent, so a cell it does not list yet gets
    /// the start grace.
    fn lists_at_once(&self) -> bool {
        true
    }
    /// What runs under this colony's labels, running or not.
    async fn list(&self) -> Result<Vec<Instance>, LaunchError>;
    /// Start a cell; returns the backend's handle (pid, container id, task ARN).
    async fn start(&self, spec: &CellSpec) -> Result<String, LaunchError>;
    /// Ask a cell to finish (it gets its shutdown deadline). With `cell`,
    /// a launcher that can tell refuses to touch anything that is not that cell.
    async fn stop(&self, backend_ref: &str, cell: Option<Uuid>, reason: &str) -> Result<(), LaunchError>;
    /// Get rid of an orphan: stop it if it runs, and remove what is left.
    async fn reap(&self, backend_ref: &str, cell: Option<Uuid>, reason: &str) -> Result<(), LaunchError> {
        self.stop(backend_ref, cell, reason).await
    }
}

/// The variables of the mothership's environment that are part of the cell
/// contract (docs/ARCHITECTURE.md §2), by exact name: the storage settings
/// and S3 credentials, the cells' own tuning, and the resolver allow-list.
/// Everything else stays with the mothership: its platform credentials, the
/// dashboard's token, its launcher and policy settings, and whatever else
/// the host happens to carry.
const CONTRACT: &[&str] = &[
    "COLONY_STORAGE_URL",
    "COLONY_S3_PATH_STYLE",
    "COLONY_S3_MULTIPART_THRESHOLD_MIB",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "COLONY_DB_MAX_CONNECTIONS",
    "COLONY_DB_CONNECT_TIMEOUT",
    "COLONY_STATEMENT_TIMEOUT",
    "COLONY_LOG",
    "COLONY_LOG_FORMAT",
    "COLONY_HEARTBEAT_INTERVAL",
    "COLONY_KEEP_ADS",
    "COLONY_MAX_PLAYLIST_MIB",
    "COLONY_MAX_SEGMENT_MBPS",
    "COLONY_SPOOL_DIR",
    "COLONY_SPOOL_MAX_MIB",
    "COLONY_RESOLVERS",
];

/// Families of contract variables: the cells' settings and the host's
/// resolver profiles (`COLONY_RESOLVER_<NAME>`, and the older
/// `COLONY_VOD_RESOLVER_<PLATFORM>`).
const CONTRACT_PREFIXES: &[&str] = &["OBSERVER_", "HARVEST_", "COLONY_RESOLVER_", "COLONY_VOD_RESOLVER_"];

/// What a cell started as a local process also takes from this host: where
/// programs are, its home and its language. A container or task has its
/// image's own.
pub const HOST_VARS: &[&str] = &["PATH", "HOME", "LANG"];

/// Is `key` part of the cell contract?
pub fn in_contract(key: &str) -> bool {
    CONTRACT.contains(&key) || CONTRACT_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The contract variables of this process's environment.
pub fn inherited_env() -> Vec<(String, String)> {
    inherited_from(std::env::vars())
}

/// [`inherited_env`] of a given environment. Pure.
fn inherited_from(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vars.filter(|(k, _)| in_contract(k)).collect();
    env.sort();
    env
}

/// One `--cell-env` / `COLONY_CELL_ENV` entry: `KEY=VALUE` sets a variable
/// for every cell; a bare `KEY` passes this host's own value through (a
/// proxy setting, `TZ`), or nothing when it is unset here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellVar {
    Set(String, String),
    PassThrough(String),
}

/// The Postgres URL each kind of cell connects with: a login of its own
/// role (`mothership db roles`). None: the mothership's own URL.
#[derive(Debug, Clone, Default)]
pub struct RoleUrls {
    pub observer: Option<String>,
    pub harvest: Option<String>,
}

/// The cell environment contract (docs/ARCHITECTURE.md §2), assembled here
/// and nowhere else: the contract variables of the mothership's
/// environment, then `DATABASE_URL`, then the operator's `--cell-env`
/// entries. [`CellEnv::observer`] and [`CellEnv::harvest`] add what one
/// cell gets, its role's database URL first among them.
#[derive(Debug, Clone, Default)]
pub struct CellEnv {
    vars: Vec<(String, String)>,
    roles: RoleUrls,
}

impl CellEnv {
    /// [`inherited_env`], `DATABASE_URL` set to the mothership's own, then
    /// each `--cell-env` entry, replacing what it names. `roles` replaces
    /// `DATABASE_URL` for the cells of each role.
    pub fn new(database_url: &str, roles: RoleUrls, entries: &[CellVar]) -> Self {
        Self::from_env(std::env::vars(), database_url, roles, entries)
    }

    /// [`CellEnv::new`] over a given environment. Pure.
    fn from_env(
        vars: impl Iterator<Item = (String, String)>,
        database_url: &str,
        roles: RoleUrls,
        entries: &[CellVar],
    ) -> Self {
        let host: Vec<(String, String)> = vars.collect();
        let mut env = CellEnv { vars: inherited_from(host.iter().cloned()), roles };
        env.set("DATABASE_URL", database_url);
        for entry in entries {
            match entry {
                CellVar::Set(k, v) => env.set(k, v.clone()),
                CellVar::PassThrough(k) => {
                    if let Some((_, v)) = host.iter().find(|(name, _)| name == k) {
                        env.set(k, v.clone());
                    }
                }
            }
        }
        env
    }

    /// Set `key`, replacing an earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.into()));
    }

    /// Tell cells the start grace: one that cannot reach Postgres keeps
    /// trying that long before it gives up (`COLONY_START_GRACE`), since the
    /// mothership waits that long for its first heartbeat anyway.
    pub fn start_grace(&mut self, grace: std::time::Duration) {
        self.set("COLONY_START_GRACE", humantime::format_duration(grace).to_string());
    }

    /// Does every kind of cell connect as a role of its own?
    pub fn cells_have_roles(&self) -> bool {
        self.roles.observer.is_some() && self.roles.harvest.is_some()
    }

    /// An observer's: its role's database URL, its cell id, its assignment
    /// and the recording's lease token.
    pub fn observer(&self, cell_id: Uuid, assignment: &ObserverAssignment<'_>) -> Vec<(String, String)> {
        let mut env = self.clone();
        if let Some(url) = &self.roles.observer {
            env.set("DATABASE_URL", url.clone());
        }
        env.set("COLONY_CELL_ID", cell_id.to_string());
        env.set("OBSERVER_RECORDING_ID", assignment.recording_id.to_string());
        env.set("OBSERVER_CHANNEL_ID", assignment.channel_id.to_string());
        env.set("OBSERVER_CHANNEL_LOGIN", assignment.login);
        env.set("OBSERVER_CHANNEL_NAME", assignment.name);
        env.set("COLONY_LEASE_TOKEN", assignment.lease_token.to_string());
        env.vars
    }

    /// A harvest cell's: its role's database URL, its cell id, and
    /// `HARVEST_STAY` when the pool keeps a minimum (the mothership alone
    /// shrinks it then).
    pub fn harvest(&self, cell_id: Uuid, stay: bool) -> Vec<(String, String)> {
        let mut env = self.clone();
        if let Some(url) = &self.roles.harvest {
            env.set("DATABASE_URL", url.clone());
        }
        env.set("COLONY_CELL_ID", cell_id.to_string());
        if stay {
            env.set("HARVEST_STAY", "true");
        }
        env.vars
    }
}

/// What an observer is started for.
#[derive(Debug, Clone, Copy)]
pub struct ObserverAssignment<'a> {
    pub recording_id: RecordingId,
    pub lease_token: i64,
    pub channel_id: ChannelId,
    pub login: &'a str,
    pub name: &'a str,
}

/// Parse the labels (or environment) a launcher reads back into an [`Instance`].
pub fn instance_from_labels(backend_ref: String, running: bool, get: impl Fn(&str) -> Option<String>) -> Instance {
    Instance {
        backend_ref,
        cell_id: get(LABEL_CELL).and_then(|v| v.parse().ok()),
        kind: get(LABEL_KIND).and_then(|v| CellKind::parse(&v)),
        running,
    }
}

/// A `--cell-env` entry: `KEY=VALUE`, or a bare `KEY` to pass through. A
/// refused entry is never echoed: its value may be a secret.
pub fn parse_cell_var(raw: &str) -> Result<CellVar, String> {
    let plain = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match raw.split_once('=') {
        Some((k, v)) if plain(k) => Ok(CellVar::Set(k.to_owned(), v.to_owned())),
        None if plain(raw.trim()) => Ok(CellVar::PassThrough(raw.trim().to_owned())),
        _ => Err("an entry is not KEY=VALUE or a bare KEY with a plain variable name (A-Z, 0-9, _); it is not \
                  shown here, as it may hold a secret"
            .into()),
    }
}

/// A launcher refused by its configuration is the operator's to fix; a
/// backend that failed may answer next time.
impl colony::exit::Classify for LaunchError {
    fn class(&self) -> colony::exit::ErrorClass {
        match self {
            LaunchError::Refused(_) => colony::exit::ErrorClass::Config,
            LaunchError::Backend { .. } => colony::exit::ErrorClass::Transient,
        }
    }
}

#[cfg(test)]
mod cell_env_tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>().into_iter()
    }

    fn get(env: &[(String, String)], key: &str) -> String {
        let found: Vec<&str> = env.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
        assert_eq!(found.len(), 1, "{key} in {env:?}");
        found[0].to_owned()
    }

    /// The contract in one place: each role's cells get their role's
    /// database URL, `--cell-env` replaces what it names, and each cell gets
    /// its own id and (for an observer) its assignment, each variable once.
    #[test]
    fn a_cell_gets_the_contract_each_variable_once() {
        let roles = RoleUrls { observer: Some("postgres://obs/db".into()), harvest: Some("postgres://hv/db".into()) };
        let entries = [CellVar::Set("OBSERVER_STANDBY".into(), "5s".into())];
        let env = CellEnv::from_env(vars(&[("OBSERVER_STANDBY", "2m")]), "postgres://m/db", roles, &entries);
        let cell = Uuid::nil();
        let observer = env.observer(
            cell,
            &ObserverAssignment {
                recording_id: RecordingId(7),
                lease_token: 3,
                channel_id: ChannelId(2),
                login: "mike",
                name: "Mike",
            },
        );
        assert_eq!(get(&observer, "DATABASE_URL"), "postgres://obs/db");
        assert_eq!(get(&observer, "OBSERVER_STANDBY"), "5s");
        assert_eq!(get(&observer, "OBSERVER_RECORDING_ID"), "7");
        assert_eq!(get(&observer, "COLONY_LEASE_TOKEN"), "3");
        assert_eq!(get(&observer, "OBSERVER_CHANNEL_LOGIN"), "mike");
        assert_eq!(get(&observer, "COLONY_CELL_ID"), cell.to_string());
        let harvest = env.harvest(cell, true);
        assert_eq!(get(&harvest, "DATABASE_URL"), "postgres://hv/db");
        assert_eq!(get(&harvest, "HARVEST_STAY"), "true");
        assert!(!harvest.iter().any(|(k, _)| k.starts_with("OBSERVER_CHANNEL")));
        assert!(!env.harvest(cell, false).iter().any(|(k, v)| k == "HARVEST_STAY" && v == "true"));
        // Without role URLs, the mothership's own.
        let plain = CellEnv::from_env(vars(&[]), "postgres://m/db", RoleUrls::default(), &[]);
        assert_eq!(get(&plain.harvest(cell, false), "DATABASE_URL"), "postgres://m/db");
        assert!(!plain.cells_have_roles() && env.cells_have_roles());
    }

    /// Defect: a cell inherited the mothership's whole environment, platform
    /// credentials and web token included. Only the contract crosses now,
    /// and `--cell-env KEY` passes one more variable through by name.
    #[test]
    fn a_cell_gets_the_contract_and_nothing_else() {
        let host = [
            ("COLONY_WEB_TOKEN", "secret"),
            ("COLONY_MEDIA_ENDPOINT", "http://m"),
            ("COLONY_TWITCH_CLIENT_SECRET", "secret"),
            ("COLONY_YOUTUBE_API_KEY", "secret"),
            ("COLONY_KICK_CLIENT_SECRET", "secret"),
            ("COLONY_OBSERVER_DATABASE_URL", "postgres://obs/db"),
            ("COLONY_SOMETHING_NEW", "x"),
            ("UNRELATED_HOST_SECRET", "secret"),
            ("RUST_LOG", "trace"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
            ("COLONY_STORAGE_URL", "file:///m"),
            ("COLONY_RESOLVER_TWITCH", "streamlink --stream-url {url} best"),
            ("COLONY_RESOLVERS", "streamlink"),
            ("OBSERVER_TWITCH_CHAT_URL", "ws://127.0.0.1:1/"),
            ("HOME", "/root"),
            ("TZ", "UTC"),
        ];
        let entries = [CellVar::PassThrough("TZ".into()), CellVar::PassThrough("NOT_SET_HERE".into())];
        let env = CellEnv::from_env(vars(&host), "postgres://m/db", RoleUrls::default(), &entries);
        let mut keys: Vec<String> = env.harvest(Uuid::nil(), false).into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "COLONY_CELL_ID",
                "COLONY_RESOLVERS",
                "COLONY_RESOLVER_TWITCH",
                "COLONY_STORAGE_URL",
                "DATABASE_URL",
                "OBSERVER_TWITCH_CHAT_URL",
                "TZ"
            ]
        );
    }

    #[test]
    fn cell_env_entries_set_or_pass_through() {
        assert_eq!(parse_cell_var("A=b=c"), Ok(CellVar::Set("A".into(), "b=c".into())));
        assert_eq!(parse_cell_var("HTTPS_PROXY"), Ok(CellVar::PassThrough("HTTPS_PROXY".into())));
        for bad in ["", "=x", "A B=c", "DATABASE_URL postgres://u:pw@h/db"] {
            let e = parse_cell_var(bad).unwrap_err();
            assert!(!e.contains("pw@"), "{e}");
        }
    }
}
