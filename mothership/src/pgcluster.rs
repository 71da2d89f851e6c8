//! A private PostgreSQL cluster on this machine: finding the server's
//! programs and building the `initdb` and `pg_ctl` commands, as the
//! `postgres` user when run as root (initdb refuses root).
//!
//! `mothership up` and the test harness both start their clusters with it.
//! The commands are built as [`std::process::Command`]; async code runs them
//! through [`run`] (tokio's process API), blocking code through
//! [`run_blocking`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server's programs: initdb, pg_ctl.
#[derive(Debug, Clone)]
pub struct PgTools {
    bin: PathBuf,
}

/// What went wrong starting or stopping a cluster, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: `apt-get install postgresql`, or put initdb on PATH"
    )]
    NotInstalled,
    #[error("running {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("{what} failed ({status}): {last}")]
    Failed { what: String, status: std::process::ExitStatus, last: String },
}

fn root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

impl PgTools {
    /// The directory of an `initdb` on PATH, else the newest
    /// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH).
    pub fn find() -> Result<Self, ClusterError> {
        let on_path = std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file()));
        let bin = on_path.or_else(|| {
            let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin)| bin.join("initdb").is_file())
                .collect();
            versions.sort();
            versions.pop().map(|(_, bin)| bin)
        });
        bin.map(|bin| Self { bin }).ok_or(ClusterError::NotInstalled)
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// One of the server's programs, run as `postgres` when this process is root.
    pub fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `initdb -D <data> <args…>`.
    pub fn initdb(&self, data: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(data).args(args);
        cmd
    }

    /// `pg_ctl start`, waiting up to 60 s, logging to `log`, with server `options`.
    pub fn start(&self, data: &Path, log: &Path, options: Option<&str>) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(data).arg("-l").arg(log).args(["-w", "-t", "60"]);
        if let Some(options) = options {
            cmd.args(["-o", options]);
        }
        cmd.arg("start");
        cmd
    }

    /// `pg_ctl stop` in `mode`: `fast` rolls open transactions back,
    /// `immediate` is a crash (what an outage test wants).
    pub fn stop(&self, data: &Path, mode: &str) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(data).args(["-m", mode, "-w", "stop"]);
        cmd
    }

    /// `pg_ctl status`: succeeds when the cluster runs.
    pub fn status(&self, data: &Path) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(data);
        cmd
    }
}

/// Give a directory to `postgres` when this process is root, so the cluster
/// it holds can run as that user.
pub fn chown_to_postgres(dir: &Path) -> Command {
    let mut cmd = Command::new("chown");
    cmd.args(["-R", "postgres:postgres"]).arg(dir).stdin(Stdio::null());
    cmd
}

/// Whether `postgres` can write `dir` (only asked when running as root).
pub fn postgres_can_write(dir: &Path) -> bool {
    !root()
        || Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn checked(what: &str, out: std::io::Result<std::process::Output>) -> Result<(), ClusterError> {
    let out = out.map_err(|source| ClusterError::Spawn { what: what.to_owned(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").to_owned();
    Err(ClusterError::Failed { what: what.to_owned(), status: out.status, last })
}

/// Run a command to its end from async code, without blocking the runtime.
pub async fn run(what: &str, cmd: Command) -> Result<(), ClusterError> {
    let mut cmd = tokio::process::Command::from(cmd);
    checked(what, cmd.output().await)
}

/// Run a command to its end from blocking code.
pub fn run_blocking(what: &str, mut cmd: Command) -> Result<(), ClusterError> {
    checked(what, cmd.output())
}

impl colony::exit::Classify for ClusterError {
    fn class(&self) -> colony::exit::ErrorClass {
        match self {
            ClusterError::NotInstalled => colony::exit::ErrorClass::Config,
            ClusterError::Spawn { .. } | ClusterError::Failed { .. } => colony::exit::ErrorClass::Permanent,
        }
    }
}
