//! What `tick`, `run` and `up` share: the flags of a tick, the pool and
//! launcher built from them once, and the loop that ticks until stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use colony::config::DatabaseArgs;
use colony::exit::Exit;

use crate::launcher::docker::{DockerArgs, DockerLauncher};
use crate::launcher::ecs::{EcsArgs, EcsLauncher};
use crate::launcher::process::{ProcessArgs, ProcessLauncher};
use crate::launcher::{self, Launcher};
use crate::policy_args::PolicyArgs;
use crate::probe::ProbeArgs;
use crate::tick::{TickCtx, TickOutcome};
use colony_planner::policy::Policy;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LauncherKind {
    /// Local processes (the default on one machine).
    Process,
    /// Containers on the Docker engine at DOCKER_HOST.
    Docker,
    /// AWS ECS tasks.
    Ecs,
}

#[derive(Debug, Args)]
pub struct TickArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Where cells run.
    #[arg(long, env = "COLONY_LAUNCHER", value_enum, default_value = "process")]
    pub launcher: LauncherKind,
    /// Extra environment for every cell, repeatable (comma-separated in the
    /// variable): KEY=VALUE sets a variable, a bare KEY passes this host's
    /// own value through (e.g. HTTPS_PROXY). Cells get their contract and
    /// these, nothing else of this host's environment.
    #[arg(long, env = "COLONY_CELL_ENV", value_delimiter = ',', value_parser = launcher::parse_cell_var, value_name = "KEY=VALUE|KEY")]
    pub cell_env: Vec<launcher::CellVar>,
    /// The Postgres URL observer cells connect with: a login in the
    /// colony_observer role (`mothership db roles` creates it). Without it,
    /// observers get this mothership's own URL, and every tick says so.
    #[arg(long, env = "COLONY_OBSERVER_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub observer_database_url: Option<colony::config::DatabaseUrl>,
    /// The Postgres URL harvest cells connect with: a login in the
    /// colony_harvest role. Without it, harvest cells get this mothership's
    /// own URL, and every tick says so.
    #[arg(long, env = "COLONY_HARVEST_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub harvest_database_url: Option<colony::config::DatabaseUrl>,
    /// How long a tick may spend signing and sending webhook deliveries
    /// (the rest wait for the next tick).
    #[arg(long, env = "COLONY_WEBHOOK_BUDGET", default_value = "20s", value_name = "DURATION")]
    pub webhook_budget: humantime::Duration,
    /// A tick that takes longer is abandoned and its lock released (each
    /// statement also has --statement-timeout).
    #[arg(long, env = "COLONY_TICK_DEADLINE", default_value = "2m", value_name = "DURATION")]
    pub tick_deadline: colony::config::NonZeroDuration,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten, next_help_heading = "Process launcher")]
    pub process: ProcessArgs,
    #[command(flatten, next_help_heading = "Docker launcher")]
    pub docker: DockerArgs,
    #[command(flatten, next_help_heading = "ECS launcher")]
    pub ecs: EcsArgs,
}

/// A pool and a launcher, built once per tick (or once for `run`).
pub struct Setup {
    pub pool: colony::db::Pool,
    pub instance: uuid::Uuid,
    pub launcher: Arc<dyn Launcher>,
    pub policy: Policy,
    pub cell_env: launcher::CellEnv,
}

impl Setup {
    pub async fn new(args: &TickArgs) -> anyhow::Result<Self> {
        // Validate everything before touching anything.
        let policy = args.policy.validate().map_err(|e| Exit::config(e.to_string()))?;
        let pool = colony::db::connect(&args.db).await?;
        let instance = crate::observe::instance_id(&pool).await.context("reading the colony's id")?;
        let launcher: Arc<dyn Launcher> = match args.launcher {
            LauncherKind::Process => {
                Arc::new(ProcessLauncher::new(instance, &args.process).map_err(colony::exit::classified)?)
            }
            LauncherKind::Docker => Arc::new(
                DockerLauncher::connect(instance, args.docker.clone()).await.map_err(colony::exit::classified)?,
            ),
            LauncherKind::Ecs => {
                Arc::new(EcsLauncher::connect(instance, args.ecs.clone()).await.map_err(colony::exit::classified)?)
            }
        };
        let roles = launcher::RoleUrls {
            observer: args.observer_database_url.as_ref().map(|u| u.expose().to_owned()),
            harvest: args.harvest_database_url.as_ref().map(|u| u.expose().to_owned()),
        };
        let mut cell_env = launcher::CellEnv::new(args.db.database_url.expose(), roles, &args.cell_env);
        cell_env.start_grace(policy.start_grace);
        // ECS cells take DATABASE_URL from their own task definitions, not from here.
        let from_task_definitions = matches!(args.launcher, LauncherKind::Ecs) && !args.ecs.ecs_pass_secrets;
        if !cell_env.cells_have_roles() && !from_task_definitions {
            tracing::warn!(
                "cells connect with this mothership's own database URL: run `mothership db roles` and set \
                 COLONY_OBSERVER_DATABASE_URL and COLONY_HARVEST_DATABASE_URL (docs/SECURITY.md)"
            );
        }
        Ok(Self { pool, instance, launcher, policy, cell_env })
    }

    pub fn ctx<'a>(&'a self, args: &'a TickArgs) -> TickCtx<'a> {
        TickCtx {
            pool: &self.pool,
            launcher: self.launcher.as_ref(),
            policy: &self.policy,
            probe: &args.probe,
            cell_env: self.cell_env.clone(),
            deadline: args.tick_deadline.get(),
            webhook_budget: args.webhook_budget.into(),
        }
    }
}

/// Tick every `every` until `stop` resolves; a stop never cuts a tick short.
pub async fn tick_loop(
    setup: &Setup,
    args: &TickArgs,
    every: Duration,
    mut show: impl FnMut(TickOutcome),
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let started = tokio::time::Instant::now();
        match crate::tick::tick(&setup.ctx(args)).await {
            Ok(outcome) => show(outcome),
            // A failed tick (Postgres away) is retried at the next one.
            Err(e) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "tick failed; trying again next time")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + every) => {}
            _ = &mut stop => break,
        }
    }
}
