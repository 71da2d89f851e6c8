//! The `process` launcher: cells as local processes, the default on one
//! machine.
//!
//! Each cell runs in its own process group, so a cron-run tick can exit and
//! leave its cells running, and a Ctrl-C aimed at `mothership run` does not
//! reach them. A cell starts with an empty environment: its contract, this
//! host's `PATH`, `HOME` and `LANG`, and two markers (`COLONY_INSTANCE_ID`,
//! `COLONY_CELL_KIND`); nothing else of the mothership's crosses. `list` finds
//! cells again by reading those markers from `/proc/<pid>/environ`, and
//! `stop` signals a pid only if it still carries this colony's marker and the
//! cell's own `COLONY_CELL_ID`, so a reused pid never gets a healthy cell
//! killed. Cell logs are created 0600: they may quote a cell's environment.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use uuid::Uuid;

use super::{CellSpec, LaunchError, Launcher, instance_from_labels};
use colony_planner::model::{CellKind, Instance};

pub const ENV_INSTANCE: &str = "COLONY_INSTANCE_ID";
pub const ENV_KIND: &str = "COLONY_CELL_KIND";
pub const ENV_CHANNEL: &str = "COLONY_CELL_CHANNEL";

#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// The observer-cell binary. Default: beside this mothership binary, else on PATH.
    #[arg(long, env = "COLONY_PROCESS_OBSERVER_BIN", value_name = "PATH")]
    pub process_observer_bin: Option<PathBuf>,
    /// The harvest-cell binary. Default: beside this mothership binary, else on PATH.
    #[arg(long, env = "COLONY_PROCESS_HARVEST_BIN", value_name = "PATH")]
    pub process_harvest_bin: Option<PathBuf>,
    /// Where each cell's stdout and stderr go, one file per cell.
    /// Default: $XDG_STATE_HOME/colony/cells (~/.local/state/colony/cells).
    #[arg(long, env = "COLONY_PROCESS_LOG_DIR", value_name = "DIR")]
    pub process_log_dir: Option<PathBuf>,
}

pub struct ProcessLauncher {
    instance: Uuid,
    observer_bin: PathBuf,
    harvest_bin: PathBuf,
    log_dir: PathBuf,
}

fn default_bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

impl ProcessLauncher {
    pub fn new(instance: Uuid, args: &ProcessArgs) -> Result<Self, LaunchError> {
        let log_dir = args.process_log_dir.clone().unwrap_or_else(|| {
            let state = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/state")
            });
            state.join("colony/cells")
        });
        std::fs::create_dir_all(&log_dir).map_err(|e| {
            LaunchError::Refused(format!("cannot create the cell log directory {}: {e}", log_dir.display()))
        })?;
        Ok(Self {
            instance,
            observer_bin: args.process_observer_bin.clone().unwrap_or_else(|| default_bin("observer-cell")),
            harvest_bin: args.process_harvest_bin.clone().unwrap_or_else(|| default_bin("harvest-cell")),
            log_dir,
        })
    }

    pub fn log_path(&self, kind: CellKind, cell: Uuid) -> PathBuf {
        self.log_dir.join(format!("{}-{cell}.log", kind.as_str()))
    }

    /// The markers of a process, if it is one of this colony's cells.
    fn markers(&self, pid: i32) -> Option<Vec<(String, String)>> {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let vars: Vec<(String, String)> = raw
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let ours = vars.iter().any(|(k, v)| k == ENV_INSTANCE && *v == self.instance.to_string());
        ours.then_some(vars)
    }
}

fn env_get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[async_trait::async_trait]
impl Launcher for ProcessLauncher {
    fn backend(&self) -> &'static str {
        "process"
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let proc = std::fs::read_dir("/proc").map_err(|e| LaunchError::backend("process", "read /proc", e))?;
        let mut found = Vec::new();
        for entry in proc.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Some(vars) = self.markers(pid) else { continue };
            found.push(instance_from_labels(pid.to_string(), true, |label| {
                let key = match label {
                    super::LABEL_CELL => "COLONY_CELL_ID",
                    super::LABEL_KIND => ENV_KIND,
                    _ => return None,
                };
                env_get(&vars, key).map(str::to_owned)
            }));
        }
        Ok(found)
    }

    async fn start(&self, spec: &CellSpec) -> Result<String, LaunchError> {
        let bin = match spec.kind {
            CellKind::Observer => &self.observer_bin,
            CellKind::Harvest => &self.harvest_bin,
        };
        let log_path = self.log_path(spec.kind, spec.cell_id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| LaunchError::Refused(format!("cannot open the cell log {}: {e}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|e| LaunchError::backend("process", "duplicate the log handle", e))?;
        let mut command = tokio::process::Command::new(bin);
        command
            .env_clear()
            .envs(super::HOST_VARS.iter().filter_map(|k| Some((*k, std::env::var_os(k)?))))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(ENV_INSTANCE, self.instance.to_string())
            .env(ENV_KIND, spec.kind.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(channel) = &spec.channel {
            command.env(ENV_CHANNEL, channel);
        }
        let child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LaunchError::Refused(format!(
                "cell binary '{}' was not found: install it beside mothership or set --process-{}-bin",
                bin.display(),
                spec.kind.as_str()
            )),
            _ => LaunchError::backend("process", format!("spawn {}", display(bin)), e),
        })?;
        let pid = child.id().ok_or_else(|| LaunchError::Refused("the cell exited before it got a pid".into()))?;
        // Dropping the handle leaves the child running; tokio reaps it when it exits.
        drop(child);
        Ok(pid.to_string())
    }

    async fn stop(&self, backend_ref: &str, cell: Option<Uuid>, _reason: &str) -> Result<(), LaunchError> {
        signal(self, backend_ref, cell, Signal::SIGTERM)
    }

    async fn reap(&self, backend_ref: &str, cell: Option<Uuid>, _reason: &str) -> Result<(), LaunchError> {
        signal(self, backend_ref, cell, Signal::SIGKILL)
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Signal a cell's process, unless the pid no longer belongs to this colony,
/// or (with `cell`) to that cell: then it is already gone, which is what was
/// wanted, and whatever reuses the pid is left alone.
fn signal(launcher: &ProcessLauncher, backend_ref: &str, cell: Option<Uuid>, sig: Signal) -> Result<(), LaunchError> {
    let pid: i32 = backend_ref.parse().map_err(|_| LaunchError::Refused(format!("'{backend_ref}' is not a pid")))?;
    let Some(vars) = launcher.markers(pid) else {
        return Ok(());
    };
    if let Some(cell) = cell
        && env_get(&vars, "COLONY_CELL_ID") != Some(cell.to_string().as_str())
    {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(LaunchError::backend("process", format!("send {sig} to pid {pid}"), e)),
    }
}
