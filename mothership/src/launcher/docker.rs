//! The `docker` launcher (bollard): one container per cell, on the local
//! engine or a remote `DOCKER_HOST` (unix://, tcp://).
//!
//! Containers carry the labels `colony.instance`, `colony.cell.kind`,
//! `colony.cell.id` and `colony.channel`, and get the env contract and
//! nothing else: no Docker socket, no host paths, no capabilities
//! (`cap_drop: ALL`), `no-new-privileges`, and memory and pids limits, so a
//! cell that a hostile source or a bug makes misbehave stays in its box. Observer cells mount one
//! named volume per colony, `colony-spool-<instance>`, as their spool, so a
//! replacement started on the same engine finds what a dead one spooled. The launcher never pulls:
//! an image missing on the engine is a failed start with a clear reason.
//! `stop` sends SIGTERM and returns (the cell drains on its own time);
//! `reap` stops with a deadline and removes the container.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, Mount, MountType, MountVolumeOptions, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use uuid::Uuid;

use super::{
    CellSpec, LABEL_CELL, LABEL_CHANNEL, LABEL_INSTANCE, LABEL_KIND, LaunchError, Launcher, instance_from_labels,
};
use colony_planner::model::{CellKind, Instance};

/// Where an observer container's spool volume is mounted. The images create
/// it, owned by the cell's user, so a new volume starts with that owner.
pub const SPOOL_MOUNT: &str = "/var/lib/colony/spool";

#[derive(Debug, Clone, clap::Args)]
pub struct DockerArgs {
    /// Image for observer cells (built locally; the launcher never pulls).
    #[arg(
        long,
        env = "COLONY_DOCKER_OBSERVER_IMAGE",
        default_value = "colony-observer-cell:latest",
        value_name = "IMAGE"
    )]
    pub docker_observer_image: String,
    /// Image for harvest cells.
    #[arg(
        long,
        env = "COLONY_DOCKER_HARVEST_IMAGE",
        default_value = "colony-harvest-cell:latest",
        value_name = "IMAGE"
    )]
    pub docker_harvest_image: String,
    /// Network mode for cells, e.g. `host` when Postgres listens on the host's loopback,
    /// or a user-defined network's name. Default: the engine's default bridge.
    #[arg(long, env = "COLONY_DOCKER_NETWORK", value_name = "NETWORK")]
    pub docker_network: Option<String>,
    /// Memory an observer container may use (e.g. 512MiB, 2GiB); past it the
    /// kernel kills the cell and its recording is handed over.
    #[arg(long, env = "COLONY_DOCKER_OBSERVER_MEMORY", default_value = "1GiB", value_name = "SIZE")]
    pub docker_observer_memory: bytesize::ByteSize,
    /// Memory a harvest container may use; re-encodes need the most.
    #[arg(long, env = "COLONY_DOCKER_HARVEST_MEMORY", default_value = "4GiB", value_name = "SIZE")]
    pub docker_harvest_memory: bytesize::ByteSize,
    /// Processes and threads a cell container may run (ffmpeg's threads count).
    #[arg(long, env = "COLONY_DOCKER_PIDS_LIMIT", default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(i64).range(16..))]
    pub docker_pids_limit: i64,
    /// Seconds `docker stop` waits before killing a cell being reaped.
    #[arg(long, env = "COLONY_DOCKER_STOP_TIMEOUT", default_value_t = 30, value_name = "SECONDS")]
    pub docker_stop_timeout: i32,
}

pub struct DockerLauncher {
    docker: Docker,
    instance: Uuid,
    args: DockerArgs,
}

fn docker_error(what: impl Into<String>, e: bollard::errors::Error) -> LaunchError {
    LaunchError::backend("docker", what, e)
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerLauncher {
    /// Connect to `DOCKER_HOST` (default: the local socket) and agree on an API version.
    pub async fn connect(instance: Uuid, args: DockerArgs) -> Result<Self, LaunchError> {
        let docker = Docker::connect_with_defaults().map_err(|e| docker_error("connect (check DOCKER_HOST)", e))?;
        let docker =
            docker.negotiate_version().await.map_err(|e| docker_error("answer (is the engine running?)", e))?;
        Ok(Self { docker, instance, args })
    }

    fn memory(&self, kind: CellKind) -> bytesize::ByteSize {
        match kind {
            CellKind::Observer => self.args.docker_observer_memory,
            CellKind::Harvest => self.args.docker_harvest_memory,
        }
    }

    fn image(&self, kind: CellKind) -> &str {
        match kind {
            CellKind::Observer => &self.args.docker_observer_image,
            CellKind::Harvest => &self.args.docker_harvest_image,
        }
    }
}

#[async_trait::async_trait]
impl Launcher for DockerLauncher {
    fn backend(&self) -> &'static str {
        "docker"
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_INSTANCE}={}", self.instance)])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers =
            self.docker.list_containers(Some(options)).await.map_err(|e| docker_error("list containers", e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let labels = c.labels.unwrap_or_default();
                let running = matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::RESTARTING
                            | ContainerSummaryStateEnum::PAUSED
                    )
                );
                Some(instance_from_labels(id, running, |k| labels.get(k).cloned()))
            })
            .collect())
    }

    async fn start(&self, spec: &CellSpec) -> Result<String, LaunchError> {
        let image = self.image(spec.kind).to_owned();
        let mut labels = HashMap::from([
            (LABEL_INSTANCE.to_owned(), self.instance.to_string()),
            (LABEL_KIND.to_owned(), spec.kind.as_str().to_owned()),
            (LABEL_CELL.to_owned(), spec.cell_id.to_string()),
        ]);
        if let Some(channel) = &spec.channel {
            labels.insert(LABEL_CHANNEL.to_owned(), channel.clone());
        }
        let mut env: Vec<String> =
            spec.env.iter().filter(|(k, _)| k != "COLONY_SPOOL_DIR").map(|(k, v)| format!("{k}={v}")).collect();
        let mounts = (spec.kind == CellKind::Observer).then(|| {
            env.push(format!("COLONY_SPOOL_DIR={SPOOL_MOUNT}"));
            vec![Mount {
                target: Some(SPOOL_MOUNT.into()),
                source: Some(format!("colony-spool-{}", self.instance)),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(HashMap::from([(LABEL_INSTANCE.to_owned(), self.instance.to_string())])),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
        let name = match &spec.channel {
            Some(login) => format!("colony-{}-{login}-{}", spec.kind.as_str(), &spec.cell_id.simple().to_string()[..8]),
            None => format!("colony-{}-{}", spec.kind.as_str(), &spec.cell_id.simple().to_string()[..8]),
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(env),
            labels: Some(labels),
            stop_timeout: Some(i64::from(self.args.docker_stop_timeout)),
            host_config: Some(HostConfig {
                network_mode: self.args.docker_network.clone(),
                mounts,
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                memory: Some(i64::try_from(self.memory(spec.kind).as_u64()).unwrap_or(i64::MAX)),
                pids_limit: Some(self.args.docker_pids_limit),
                // Forward SIGTERM properly and reap zombies (ffmpeg children).
                init: Some(true),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self.docker.create_container(Some(options), body).await.map_err(|e| match status_of(&e) {
            Some(404) => LaunchError::Refused(format!(
                "image '{image}' is not on the Docker host: build it there first (see Dockerfiles/); this launcher never pulls"
            )),
            _ => docker_error(format!("create container {name} from {image}"), e),
        })?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // Leave nothing half-made behind.
            let remove = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = self.docker.remove_container(&created.id, Some(remove)).await;
            return Err(docker_error(format!("start container {name}"), e));
        }
        Ok(created.id)
    }

    async fn stop(&self, backend_ref: &str, _cell: Option<Uuid>, _reason: &str) -> Result<(), LaunchError> {
        let options = KillContainerOptionsBuilder::default().signal("SIGTERM").build();
        match self.docker.kill_container(backend_ref, Some(options)).await {
            Ok(()) => Ok(()),
            // 404: gone already; 409: not running. Either way it is stopped.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(docker_error(format!("signal container {backend_ref}"), e)),
        }
    }

    async fn reap(&self, backend_ref: &str, _cell: Option<Uuid>, _reason: &str) -> Result<(), LaunchError> {
        let stop = StopContainerOptionsBuilder::default().t(self.args.docker_stop_timeout).build();
        match self.docker.stop_container(backend_ref, Some(stop)).await {
            Ok(()) => {}
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => return Err(docker_error(format!("stop container {backend_ref}"), e)),
        }
        let remove = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(backend_ref, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(docker_error(format!("remove container {backend_ref}"), e)),
        }
    }
}
