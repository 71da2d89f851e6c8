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

/// Environment variables a cell inherits from the mothership: the colony's
/// own settings, the cells' tuning and the S3 credentials, but not the
/// mothership's launcher or policy settings.
pub fn inherited_env() -> Vec<(String, String)> {
    inherited_from(std::env::vars())
}

/// [`inherited_env`] of a given environment. Pure.
fn inherited_from(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    const PREFIXES: &[&str] = &["COLONY_", "OBSERVER_", "HARVEST_", "AWS_", "RUST_"];
    const NOT_FOR_CELLS: &[&str] = &[
        "COLONY_LAUNCHER",
        "COLONY_DOCKER_",
        "COLONY_ECS_",
        "COLONY_PROCESS_",
        "COLONY_CELL_",
        "COLONY_LEASE_TOKEN",
        "COLONY_HEARTBEAT_TIMEOUT",
        "COLONY_START_GRACE",
        "COLONY_JOBS_PER_HARVEST_CELL",
        "COLONY_MIN_HARVEST",
        "COLONY_MAX_HARVEST",
        "COLONY_SCALE_DOWN_WINDOW",
        "COLONY_IDLE_COOLDOWN",
        "COLONY_MAX_OBSERVERS",
        "COLONY_PROBE_",
        "COLONY_TICK_",
        "COLONY_HOME",
        // Platform API credentials: only the mothership asks the APIs.
        "COLONY_TWITCH_",
        "COLONY_YOUTUBE_",
        "COLONY_KICK_",
        "COLONY_UP_",
        // The dashboard's settings (its token is a secret) and the webhook CLI's.
        "COLONY_WEB_",
        "COLONY_MEDIA_",
        "COLONY_METRICS_",
        "COLONY_WEBHOOK_",
        "AWS_ENDPOINT_URL_ECS",
        // The mothership's own task credentials and runtime, on ECS: a cell
        // gets its own from its task role.
        "AWS_CONTAINER_",
        "AWS_EXECUTION_ENV",
    ];
    let mut env: Vec<(String, String)> = vars
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .filter(|(k, _)| !NOT_FOR_CELLS.iter().any(|p| k.starts_with(p)))
        .collect();
    env.sort();
    env
}

/// The cell environment contract (docs/ARCHITECTURE.md §2), assembled here
/// and nowhere else: what every cell inherits, then the database URL, then
/// the operator's `--cell-env` overrides. [`CellEnv::observer`] and
/// [`CellEnv::harvest`] add what one cell gets.
#[derive(Debug, Clone, Default)]
pub struct CellEnv(Vec<(String, String)>);

impl CellEnv {
    /// [`inherited_env`], `DATABASE_URL` set to the mothership's own, then
    /// each `--cell-env KEY=VALUE`, replacing what it names.
    pub fn new(database_url: &str, overrides: &[(String, String)]) -> Self {
        let mut env = CellEnv(inherited_env());
        env.set("DATABASE_URL", database_url);
        for (k, v) in overrides {
            env.set(k, v);
        }
        env
    }

    /// Set `key`, replacing an earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into()));
    }

    /// An observer's: its cell id, its assignment and the recording's lease token.
    pub fn observer(&self, cell_id: Uuid, assignment: &ObserverAssignment<'_>) -> Vec<(String, String)> {
        let mut env = self.clone();
        env.set("COLONY_CELL_ID", cell_id.to_string());
        env.set("OBSERVER_RECORDING_ID", assignment.recording_id.to_string());
        env.set("OBSERVER_CHANNEL_ID", assignment.channel_id.to_string());
        env.set("OBSERVER_CHANNEL_LOGIN", assignment.login);
        env.set("OBSERVER_CHANNEL_NAME", assignment.name);
        env.set("COLONY_LEASE_TOKEN", assignment.lease_token.to_string());
        env.0
    }

    /// A harvest cell's: its cell id, and `HARVEST_STAY` when the pool keeps
    /// a minimum (the mothership alone shrinks it then).
    pub fn harvest(&self, cell_id: Uuid, stay: bool) -> Vec<(String, String)> {
        let mut env = self.clone();
        env.set("COLONY_CELL_ID", cell_id.to_string());
        if stay {
            env.set("HARVEST_STAY", "true");
        }
        env.0
    }
}

/// What an observer is started for.
#[derive(Debug, Clone, Copy)]
pub struct ObserverAssignment<'a> {
    pub recording_id: i64,
    pub lease_token: i64,
    pub channel_id: i64,
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

/// `KEY=VALUE`, for `--cell-env`. A refused entry is never echoed: its
/// value may be a secret.
pub fn parse_env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err("an entry is not KEY=VALUE with a plain variable name (A-Z, 0-9, _); it is not shown here, \
                  as it may hold a secret"
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

    /// The contract in one place: the database URL is the mothership's,
    /// `--cell-env` replaces what it names, and each cell gets its own id
    /// and (for an observer) its assignment, each variable once.
    #[test]
    fn a_cell_gets_the_contract_each_variable_once() {
        let env = CellEnv::new("postgres://m/db", &[("DATABASE_URL".into(), "postgres://cells/db".into())]);
        let cell = Uuid::nil();
        let observer = env.observer(
            cell,
            &ObserverAssignment { recording_id: 7, lease_token: 3, channel_id: 2, login: "mike", name: "Mike" },
        );
        let get = |env: &[(String, String)], key: &str| {
            let found: Vec<&str> = env.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
            assert_eq!(found.len(), 1, "{key} in {env:?}");
            found[0].to_owned()
        };
        assert_eq!(get(&observer, "DATABASE_URL"), "postgres://cells/db");
        assert_eq!(get(&observer, "OBSERVER_RECORDING_ID"), "7");
        assert_eq!(get(&observer, "COLONY_LEASE_TOKEN"), "3");
        assert_eq!(get(&observer, "OBSERVER_CHANNEL_LOGIN"), "mike");
        assert_eq!(get(&observer, "COLONY_CELL_ID"), cell.to_string());
        let harvest = env.harvest(cell, true);
        assert_eq!(get(&harvest, "HARVEST_STAY"), "true");
        assert!(!harvest.iter().any(|(k, _)| k.starts_with("OBSERVER_CHANNEL")));
        assert!(!env.harvest(cell, false).iter().any(|(k, v)| k == "HARVEST_STAY" && v == "true"));
    }

    /// Secrets and settings of the mothership's own (the dashboard's token,
    /// platform credentials) never reach a cell; the cells' settings do.
    #[test]
    fn a_cell_never_inherits_the_dashboards_token_or_platform_credentials() {
        let vars = [
            ("COLONY_WEB_TOKEN", "secret"),
            ("COLONY_MEDIA_ENDPOINT", "http://m"),
            ("COLONY_TWITCH_CLIENT_SECRET", "secret"),
            ("COLONY_STORAGE_URL", "file:///m"),
            ("OBSERVER_TWITCH_CHAT_URL", "ws://127.0.0.1:1/"),
            ("HOME", "/root"),
        ];
        let env = inherited_from(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["COLONY_STORAGE_URL", "OBSERVER_TWITCH_CHAT_URL"]);
    }
}
