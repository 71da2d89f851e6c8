//! `infra/compose.yaml` brought up for real, as one test's private stack.
//!
//! Every run is its own compose project (`-p colonytest<hex>`) with its own
//! env file in a temp dir, its own Docker network and loopback ports picked
//! free, so it never meets an operator's `colony` stack or another run. The
//! images are the ones `Dockerfiles/build.sh --infra` builds from this
//! checkout's debug binaries and the cargo-installed Garage; nothing is pulled.
//!
//! [`Stack`] is also the guard: dropped, it takes the project down with its
//! volumes and force-removes the cells the mothership started (found by their
//! `colony.instance` label), whether or not the test got that far.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::bins::bin;
use crate::proc::{free_port, run};

/// The tag `build.sh` gives the Colony images for this test (the service
/// images have fixed tags: colony-postgres:bookworm and so on).
pub const TAG: &str = "compose";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The compose tool that is installed, as (program, leading args): Compose v2
/// if `docker compose` works, else docker-compose 1.29.
pub fn compose_tool() -> (&'static str, Vec<&'static str>) {
    let works =
        |program: &str, args: &[&str]| Command::new(program).args(args).output().is_ok_and(|out| out.status.success());
    if works("docker", &["compose", "version"]) {
        ("docker", vec!["compose"])
    } else if works("docker-compose", &["version"]) {
        ("docker-compose", vec![])
    } else {
        panic!(
            "no compose tool: neither `docker compose` nor `docker-compose` runs \
             (Debian: apt-get install docker-compose); .ci/run installs it"
        )
    }
}

/// Every image the stack runs, built once per test process by
/// `Dockerfiles/build.sh --profile debug --tag compose --no-cargo --infra`
/// (Docker's layer cache makes a rebuild of unchanged inputs quick).
pub fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for name in ["mothership", "observer-cell", "harvest-cell"] {
            bin(name); // built, or a clear panic saying how
        }
        run(Command::new("bash")
            .arg(repo().join("Dockerfiles/build.sh"))
            .args(["--profile", "debug", "--tag", TAG, "--no-cargo", "--infra"])
            .current_dir(repo()));
    });
}

fn hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Run `docker ARGS`: its trimmed stdout, or the command, its status and
/// its stderr when it fails.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().map_err(|e| format!("cannot run docker {args:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("docker {args:?} failed ({}): {}", out.status, stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Run `docker ARGS` and return its trimmed stdout. A failure panics with
/// the command and its stderr: an empty answer is always docker's own.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A compose project of `infra/compose.yaml` plus a test override file.
pub struct Stack {
    pub project: String,
    pub postgres_password: String,
    pub s3_key_id: String,
    pub s3_secret: String,
    pub web_token: String,
    pub bucket: String,
    pub postgres_port: u16,
    pub garage_port: u16,
    pub web_port: u16,
    pub prometheus_port: u16,
    dir: tempfile::TempDir,
    /// The colony's instance id once known: its cells carry it as a label.
    instance: Mutex<Option<String>>,
    tool: (&'static str, Vec<&'static str>),
}

impl Stack {
    /// Write the env file and the override (`override_yaml`, a compose file
    /// whose services join the stack's `colony` network); nothing starts yet.
    pub fn new(override_yaml: &str, extra_env: &[(&str, &str)]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let project = format!("colonytest{}", hex(4));
        let stack = Stack {
            postgres_password: hex(16),
            s3_key_id: format!("GK{}", hex(12)),
            s3_secret: hex(32),
            web_token: hex(24),
            bucket: "colony".to_owned(),
            postgres_port: free_port(),
            garage_port: free_port(),
            web_port: free_port(),
            prometheus_port: free_port(),
            instance: Mutex::new(None),
            tool: compose_tool(),
            project,
            dir,
        };
        use std::os::unix::fs::MetadataExt;
        let docker_gid = std::fs::metadata("/var/run/docker.sock").map(|m| m.gid()).unwrap_or(0);
        let mut env = vec![
            ("COMPOSE_PROJECT_NAME".to_owned(), stack.project.clone()),
            ("POSTGRES_PASSWORD".to_owned(), stack.postgres_password.clone()),
            ("GARAGE_RPC_SECRET".to_owned(), hex(32)),
            ("COLONY_S3_ACCESS_KEY_ID".to_owned(), stack.s3_key_id.clone()),
            ("COLONY_S3_SECRET_ACCESS_KEY".to_owned(), stack.s3_secret.clone()),
            ("COLONY_WEB_TOKEN".to_owned(), stack.web_token.clone()),
            ("COLONY_MOTHERSHIP_DB_PASSWORD".to_owned(), hex(16)),
            ("COLONY_OBSERVER_DB_PASSWORD".to_owned(), hex(16)),
            ("COLONY_HARVEST_DB_PASSWORD".to_owned(), hex(16)),
            ("COLONY_WEB_DB_PASSWORD".to_owned(), hex(16)),
            ("DOCKER_GID".to_owned(), docker_gid.to_string()),
            ("COLONY_BUCKET".to_owned(), stack.bucket.clone()),
            ("COLONY_NETWORK".to_owned(), stack.project.clone()),
            ("COLONY_POSTGRES_PUBLISH".to_owned(), format!("127.0.0.1:{}", stack.postgres_port)),
            ("COLONY_GARAGE_PUBLISH".to_owned(), format!("127.0.0.1:{}", stack.garage_port)),
            ("COLONY_WEB_PUBLISH".to_owned(), format!("127.0.0.1:{}", stack.web_port)),
            ("COLONY_PROMETHEUS_PUBLISH".to_owned(), format!("127.0.0.1:{}", stack.prometheus_port)),
            ("COLONY_MOTHERSHIP_IMAGE".to_owned(), format!("colony-mothership:{TAG}")),
            ("COLONY_OBSERVER_IMAGE".to_owned(), format!("colony-observer-cell:{TAG}")),
            ("COLONY_HARVEST_IMAGE".to_owned(), format!("colony-harvest-cell:{TAG}")),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(stack.env_file(), text).unwrap();
        std::fs::write(stack.override_file(), override_yaml).unwrap();
        stack
    }

    fn env_file(&self) -> PathBuf {
        self.dir.path().join("compose.env")
    }

    fn override_file(&self) -> PathBuf {
        self.dir.path().join("compose.test.yaml")
    }

    /// `<compose> --env-file ENV -p PROJECT -f infra/compose.yaml -f OVERRIDE ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let (program, lead) = &self.tool;
        let mut cmd = Command::new(program);
        cmd.args(lead)
            .arg("--env-file")
            .arg(self.env_file())
            .args(["-p", &self.project, "-f"])
            .arg(repo().join("infra/compose.yaml"))
            .arg("-f")
            .arg(self.override_file())
            .args(args)
            .current_dir(repo().join("infra"));
        cmd
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| panic!("cannot run compose {args:?}: {e}"))
    }

    /// `exec -T SERVICE ARGS` (no TTY: both tools).
    pub fn exec(&self, service: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", "-T", service];
        all.extend_from_slice(args);
        self.compose(&all)
    }

    /// The container id of a service ("" if it has none), running or not
    /// (Compose v2's `ps` leaves exited ones out; the labels are the same in
    /// both tools).
    pub fn container(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        docker(&["ps", "-aq", "--filter", &project, "--filter", &service]).lines().next().unwrap_or_default().to_owned()
    }

    /// A service's health (`healthy`, `starting`, ...), or its state when it
    /// has no healthcheck (`running`, `exited 0`, ...).
    pub fn status(&self, service: &str) -> String {
        let id = self.container(service);
        if id.is_empty() {
            return "absent".to_owned();
        }
        docker(&[
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}} {{.State.ExitCode}}{{end}}",
            &id,
        ])
    }

    /// Wait for every service in `want` to reach its status, or fail with
    /// the statuses and the logs.
    pub fn wait_status(&self, want: &[(&str, &str)], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now: Vec<(String, String)> =
                want.iter().map(|(service, _)| ((*service).to_owned(), self.status(service))).collect();
            if want.iter().zip(&now).all(|((_, w), (_, s))| s.starts_with(w)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "services did not reach {want:?} within {timeout:?}: {now:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last lines of every service's log.
    pub fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "40"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn database_url(&self) -> String {
        format!("postgres://colony:{}@127.0.0.1:{}/colony", self.postgres_password, self.postgres_port)
    }

    /// The colony's instance id: its cells carry it as `colony.instance`.
    pub fn set_instance(&self, instance: &str) {
        *self.instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(instance.to_owned());
    }

    /// Containers of this compose project, running or not.
    pub fn project_containers(&self) -> Vec<String> {
        self.try_project_containers().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_project_containers(&self) -> Result<Vec<String>, String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        Ok(try_docker(&["ps", "-aq", "--filter", &filter])?.lines().map(str::to_owned).collect())
    }

    /// Cell containers labelled with this colony, running or not:
    /// (id, kind, state). Panics before the instance is known: no answer
    /// could be trusted then.
    pub fn cells(&self) -> Vec<(String, String, String)> {
        self.try_cells().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_cells(&self) -> Result<Vec<(String, String, String)>, String> {
        let instance = self.instance().ok_or("the colony's instance id is not known yet (set_instance)")?;
        let filter = format!("label=colony.instance={instance}");
        let format = "{{.ID}} {{.Label \"colony.cell.kind\"}} {{.State}}";
        Ok(try_docker(&["ps", "-a", "--filter", &filter, "--format", format])?
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().map(str::to_owned);
                Some((w.next()?, w.next()?, w.next()?))
            })
            .collect())
    }

    fn instance(&self) -> Option<String> {
        self.instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The stack's network, by its exact name: its id, or "" when there is none.
    pub fn network(&self) -> String {
        docker(&["network", "ls", "-q", "--filter", &format!("name=^{}$", self.project)])
    }

    /// The project's named volumes (compose labels them with the project).
    pub fn volumes(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        docker(&["volume", "ls", "-q", "--filter", &filter]).lines().map(str::to_owned).collect()
    }

    /// The observer spool volumes the docker launcher made for this colony.
    fn remove_spool_volumes(&self) -> Result<(), String> {
        let Some(instance) = self.instance() else { return Ok(()) };
        let filter = format!("label=colony.instance={instance}");
        for volume in try_docker(&["volume", "ls", "-q", "--filter", &filter])?.lines() {
            try_docker(&["volume", "rm", "-f", volume])?;
        }
        Ok(())
    }

    /// `down -v`: the project's containers, network and volumes.
    pub fn down(&self) -> Output {
        self.compose(&["down", "-v", "--remove-orphans", "-t", "20"])
    }
}

impl Stack {
    /// Take down whatever the project and the colony left, in order: the
    /// loop first, so that it starts no cell after the sweep; then the
    /// cells, because the network cannot go while they are attached to it.
    fn sweep(&self) -> Result<(), String> {
        // Down follows whatever stop answers (it fails on a project already down).
        let _ = self.compose(&["stop", "-t", "10", "mothership"]);
        let cells = || Ok::<_, String>(if self.instance().is_some() { self.try_cells()? } else { Vec::new() });
        for (id, _, _) in cells()? {
            try_docker(&["rm", "-f", &id])?;
        }
        let down = self.down();
        if !down.status.success() {
            return Err(format!("compose down failed: {}", String::from_utf8_lossy(&down.stderr)));
        }
        for id in self.try_project_containers()?.into_iter().chain(cells()?.into_iter().map(|c| c.0)) {
            try_docker(&["rm", "-f", &id])?;
        }
        self.remove_spool_volumes()?;
        let network = try_docker(&["network", "ls", "-q", "--filter", &format!("name=^{}$", self.project)])?;
        if !network.is_empty() {
            try_docker(&["network", "rm", &self.project])?;
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- compose logs of {} ---\n{}", self.project, self.logs());
        }
        // A guard must not panic (while unwinding that aborts the test
        // process): a sweep that fails says what it left, loudly.
        if let Err(e) = self.sweep() {
            eprintln!("!!! the compose stack {} was not swept clean: {e}", self.project);
        }
    }
}
