//! `mothership up`: a whole colony on this machine with embedded defaults, for
//! a first look and for small single-machine archives. A private Postgres
//! cluster under `--dir` (initdb + pg_ctl), `file://` storage beside it, the
//! `process` launcher, and the tick loop in this process. With no channel
//! configured it adds a demo channel broadcast by ffmpeg and served on
//! loopback. Ctrl-C stops the loop, then the cells (observers finalize their
//! recordings as interrupted), then Postgres; running it again picks up.

mod cluster;
mod demo;
mod narrator;
mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser};
use colony::exit::Exit;

use crate::launcher::process::{ProcessArgs, ProcessLauncher};
use crate::launcher::{CellVar, Launcher};
use cluster::{Cluster, RoleLogins, write_private};
use demo::Demo;
use narrator::Narrator;
use tools::Tools;

use crate::setup::{Setup, TickArgs, tick_loop};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where this colony lives: its Postgres cluster, media, cell logs and spool.
    /// Created on first use; running again with the same directory picks up.
    #[arg(long, env = "COLONY_HOME", default_value = ".colony", value_name = "DIR")]
    dir: PathBuf,
    /// Neither add nor broadcast the demo channel.
    #[arg(long, env = "COLONY_UP_NO_DEMO")]
    no_demo: bool,
    /// How long the demo channel broadcasts before its stream ends.
    #[arg(long, env = "COLONY_UP_DEMO_LENGTH", default_value = "60s", value_name = "DURATION")]
    demo_length: humantime::Duration,
    /// Time from the start of one tick to the start of the next.
    #[arg(long, env = "COLONY_UP_EVERY", default_value = "5s", value_name = "DURATION")]
    every: humantime::Duration,
    /// Never run apt-get, even as root; say what to install instead.
    #[arg(long, env = "COLONY_UP_NO_INSTALL")]
    no_install: bool,
    /// Where the dashboard listens (loopback unless COLONY_WEB_TOKEN is set).
    #[arg(long, env = "COLONY_UP_WEB", default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    web: String,
    /// No dashboard.
    #[arg(long, env = "COLONY_UP_NO_WEB")]
    no_web: bool,
}

/// Defaults that make a single machine feel responsive; each applies only
/// when its variable is not already set, so an operator's setting wins.
const LOOP_DEFAULTS: &[(&str, &str, &str)] = &[
    ("--probe-every", "COLONY_PROBE_EVERY", "5s"),
    ("--scale-down-window", "COLONY_SCALE_DOWN_WINDOW", "30s"),
    ("--idle-cooldown", "COLONY_IDLE_COOLDOWN", "30s"),
    ("--max-harvest", "COLONY_MAX_HARVEST", "2"),
];
const CELL_DEFAULTS: &[(&str, &str)] =
    &[("OBSERVER_STANDBY", "30s"), ("HARVEST_IDLE_EXIT", "30s"), ("HARVEST_POLL", "2s")];

const DEMO: &str = "demo";

struct Layout {
    root: PathBuf,
    cluster: PathBuf,
    media: PathBuf,
    logs: PathBuf,
    spool: PathBuf,
    demo: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Exit::config(format!("cannot create {}: {e}", dir.display())))?;
        let root = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
        let layout = Self {
            cluster: root.join("postgres"),
            media: root.join("media"),
            logs: root.join("logs"),
            spool: root.join("spool"),
            demo: root.join("demo"),
            root,
        };
        for d in [&layout.media, &layout.logs, &layout.spool, &layout.demo] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(layout)
    }
}

fn say(line: impl AsRef<str>) {
    println!("{} {}", chrono::Local::now().format("%H:%M:%S"), line.as_ref());
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&args.dir)?;
    let tools = Tools::find_or_install(!args.no_install, !args.no_demo).await?;
    let pg = Cluster { dir: layout.cluster.clone(), tools: tools.pg.clone(), logs: layout.logs.clone() };
    let database_url = pg.start().await?;
    // Cells and the dashboard connect as their own roles, never as the owner.
    let logins = pg.role_urls(&database_url).await?;
    let storage_url =
        std::env::var("COLONY_STORAGE_URL").unwrap_or_else(|_| format!("file://{}", layout.media.display()));
    write_env_file(&layout, &database_url, &logins, &storage_url)?;

    // The tick loop's arguments, parsed as `mothership run` would parse them.
    #[derive(Parser)]
    struct Loop {
        #[command(flatten)]
        tick: TickArgs,
    }
    let logs = layout.logs.display().to_string();
    let mut argv = vec!["up", "--database-url", &database_url, "--launcher", "process", "--process-log-dir", &logs];
    for (flag, var, value) in LOOP_DEFAULTS {
        if std::env::var_os(var).is_none() {
            argv.extend([*flag, *value]);
        }
    }
    let mut tick_args = Loop::try_parse_from(argv).map_err(|e| Exit::config(e.to_string()))?.tick;
    tick_args.observer_database_url = Some(colony::config::DatabaseUrl::parse(&logins.observer)?);
    tick_args.harvest_database_url = Some(colony::config::DatabaseUrl::parse(&logins.harvest)?);
    tick_args.cell_env.push(CellVar::Set("COLONY_STORAGE_URL".into(), storage_url.clone()));
    tick_args.cell_env.push(CellVar::Set("COLONY_SPOOL_DIR".into(), layout.spool.display().to_string()));
    for (var, value) in CELL_DEFAULTS {
        if std::env::var_os(var).is_none() {
            tick_args.cell_env.push(CellVar::Set((*var).into(), (*value).into()));
        }
    }
    let setup = Setup::new(&tick_args).await?;
    let pool = setup.pool.clone();

    let demo = if args.no_demo { None } else { Demo::start(&pool, &layout, &tools, args.demo_length.into()).await? };
    let existing: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM decisions").fetch_one(&pool).await?;
    let mut narrator = Narrator::new(&pool, &layout, existing).await?;

    say(format!("Colony is up in {}", layout.root.display()));
    say(format!("  postgres  {} (log: {})", redact(&database_url), layout.logs.join("postgres.log").display()));
    say(format!("  storage   {storage_url}"));
    say(format!("  cells     process launcher; logs in {}", layout.logs.display()));
    say(format!("  ticking   every {}; Ctrl-C stops everything cleanly", args.every));
    say("Add a real channel from another terminal:");
    say(format!("  set -a; . {}; set +a", layout.root.join("env").display()));
    say(format!(
        "  {} channel add --login NAME --source-url https://…/live.m3u8",
        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mothership".into())
    ));

    if !args.no_web {
        dashboard(&logins.web, &storage_url, &args.web).await;
    }

    let stop = colony::signals::stop_signal().context("installing the SIGTERM handler")?;
    let ticking = tick_loop(&setup, &tick_args, args.every.into(), |_| {}, stop);
    tokio::pin!(ticking);
    let mut look = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut ticking => break,
            _ = look.tick() => {
                if let Err(e) = narrator.look().await {
                    tracing::warn!(error = %format!("{e:#}"), "reading progress failed");
                }
            }
        }
    }

    say("stopping: the tick loop has ended; now the cells, then the demo source and Postgres");
    stop_cells(&setup, &layout).await;
    narrator.look().await.ok();
    if let Some(demo) = demo {
        demo.stop().await;
    }
    setup.pool.close().await;
    pg.stop().await?;
    say(format!(
        "stopped cleanly. Run the same command again to pick up where it left off ({}).",
        layout.root.display()
    ));
    Ok(())
}

/// The dashboard, served from this process for as long as it runs. A port
/// already taken is reported, not fatal: the colony works without it.
async fn dashboard(database_url: &str, storage_url: &str, bind: &str) {
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        serve: crate::web::ServeArgs,
    }
    let argv = ["up", "--database-url", database_url, "--storage-url", storage_url, "--bind", bind];
    let started = match Serve::try_parse_from(argv) {
        Ok(Serve { serve }) => crate::web::bind(&serve).await,
        Err(e) => Err(Exit::config(e.to_string()).into()),
    };
    match started {
        Ok((listener, web)) => {
            let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| bind.to_owned());
            say(format!("  dashboard http://{address}/"));
            tokio::spawn(async move {
                if let Err(e) = crate::web::run(listener, web, std::future::pending()).await {
                    tracing::warn!(error = %format!("{e:#}"), "the dashboard stopped");
                }
            });
        }
        Err(e) => say(format!("  dashboard not started: {e:#} (--web ADDR:PORT picks another address)")),
    }
}

fn redact(url: &str) -> String {
    colony::config::DatabaseUrl::parse(url).map(|u| u.to_string()).unwrap_or_default()
}

/// `<dir>/env`: the variables other `mothership` commands need for this
/// colony, the role URLs it hands its cells and dashboard included.
fn write_env_file(layout: &Layout, database_url: &str, logins: &RoleLogins, storage_url: &str) -> anyhow::Result<()> {
    let text = format!(
        "# Written by `mothership up`: source it to run other commands against this colony.\n\
         DATABASE_URL={database_url}\nCOLONY_OBSERVER_DATABASE_URL={}\nCOLONY_HARVEST_DATABASE_URL={}\n\
         COLONY_WEB_DATABASE_URL={}\nCOLONY_STORAGE_URL={storage_url}\nCOLONY_SPOOL_DIR={}\n",
        logins.observer,
        logins.harvest,
        logins.web,
        layout.spool.display()
    );
    write_private(&layout.root.join("env"), &text)
}

/// SIGTERM every cell this colony's process launcher runs, wait for them to
/// finish (observers finalize their recordings), and kill what outlives the wait.
async fn stop_cells(setup: &Setup, layout: &Layout) {
    let args = ProcessArgs {
        process_observer_bin: None,
        process_harvest_bin: None,
        process_log_dir: Some(layout.logs.clone()),
    };
    let Ok(launcher) = ProcessLauncher::new(setup.instance, &args) else { return };
    let cells = launcher.list().await.unwrap_or_default();
    if cells.is_empty() {
        return;
    }
    say(format!("stopping {} cell(s); observers finalize their recordings first", cells.len()));
    for cell in &cells {
        let _ = launcher.stop(&cell.backend_ref, cell.cell_id, "mothership up is stopping").await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left = launcher.list().await.unwrap_or_default();
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            say(format!("{} cell(s) outlived 90s; killing them (their work is handed back)", left.len()));
            for cell in &left {
                let _ = launcher.reap(&cell.backend_ref, cell.cell_id, "did not stop within 90s").await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
