//! `mothership`: Colony's control plane. This file parses arguments and
//! dispatches; the work lives in the `mothership` library (`src/lib.rs`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use colony::config::DatabaseArgs;
use colony::exit::{Exit, classified};
use colony::queue::CancelOutcome;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;
use mothership::backfill;
use mothership::channels::{self, ChannelExtras, ChannelUpdate, NewChannel};
use mothership::setup::{Setup, TickArgs, tick_loop};
use mothership::show;
use mothership::tick::TickOutcome;
use mothership::up;
use mothership::views;

/// Colony's control plane: starts one observer cell per live channel and a pool
/// of harvest cells sized to the job queue, and nothing when nothing is live
/// and the queue is empty. Postgres is the only source of truth.
#[derive(Debug, Parser)]
#[command(name = "mothership", version, propagate_version = true)]
#[command(after_help = "Every flag can also be set through the environment variable shown beside it.\n\
Try it on one machine: `mothership up`. To deploy: `mothership migrate`, add a channel with\n\
`mothership channel add`, then run `mothership tick` from cron every minute (or `mothership run`).")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A whole colony on this machine, for a first look or a small archive: a
    /// private Postgres cluster and file:// storage under --dir, the process
    /// launcher, and the tick loop. With no channel it adds a demo channel made
    /// with ffmpeg. Ctrl-C stops it cleanly; the same command picks up again.
    Up(up::UpArgs),
    /// Create or upgrade the database schema. Safe to run again: it applies
    /// only what is missing, and refuses a database newer than this binary.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// The database's roles: one per part of the colony, each with only the
    /// grants it needs (`db roles`).
    #[command(subcommand)]
    Db(DbCommand),
    /// Check that Postgres answers with this binary's schema and that object
    /// storage is reachable and writable; print what was found.
    Check {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// One reconcile pass, made for cron: probe channels, start observers for
    /// live ones, replace dead ones, size the harvest pool, reap orphans. A
    /// second tick while one runs exits 0 and says so.
    Tick {
        #[command(flatten)]
        tick: TickArgs,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The same tick in a loop. SIGTERM or Ctrl-C ends it after the current
    /// tick; the cells keep running.
    Run {
        #[command(flatten)]
        tick: TickArgs,
        /// Time from the start of one tick to the start of the next.
        #[arg(long, env = "COLONY_TICK_EVERY", default_value = "30s", value_name = "DURATION")]
        every: humantime::Duration,
        /// Print each tick's summary as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Channels (live?, observer, recording, last heartbeat), cells and the queue.
    Status {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten, next_help_heading = "Platforms")]
        platforms: mothership::platform_api::PlatformArgs,
        #[arg(long)]
        json: bool,
    },
    /// Add, list, change, enable, disable or remove channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Enqueue, list, retry or cancel jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Enqueue a VOD download for every URL in a file (one per line; blank
    /// lines and # comments skipped). Running it again skips URLs already queued or done.
    Backfill {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The channel the recordings belong to.
        #[arg(long, value_name = "NAME")]
        channel: String,
        /// The file of URLs, or - for standard input.
        #[arg(long, value_name = "FILE", required_unless_present = "from_platform", conflicts_with = "from_platform")]
        urls_from: Option<std::path::PathBuf>,
        /// List the channel's past broadcasts on its platform (Twitch, through
        /// Helix) and queue each once; running it again queues nothing new.
        #[arg(long)]
        from_platform: bool,
        /// With --from-platform: only broadcasts from this date on (2026-11-01,
        /// or an RFC 3339 time).
        #[arg(long, value_name = "DATE", requires = "from_platform")]
        since: Option<String>,
        /// With --from-platform: at most this many, newest first.
        #[arg(long, value_name = "N", requires = "from_platform", default_value_t = 10_000)]
        limit: usize,
        #[command(flatten, next_help_heading = "Platforms")]
        platforms: mothership::platform_api::PlatformArgs,
    },
    /// The cells that run (with --all, also recently finished ones).
    Cells {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// The web dashboard, its JSON API (/api/v1), Prometheus metrics
    /// (/metrics) and health checks (/healthz, /readyz), in one long-running
    /// server beside the tick loop. Binds 127.0.0.1 unless told otherwise;
    /// any other address needs COLONY_WEB_TOKEN.
    Serve(mothership::web::ServeArgs),
    /// Signed webhooks: tell another service when a channel goes live, a
    /// recording ends or a job dies.
    #[command(subcommand)]
    Webhook(mothership::webhook::WebhookCommand),
    /// What the mothership did and why, newest first.
    Decisions {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: i64,
        /// Only actions that failed.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or update the Postgres roles colony_mothership, colony_observer,
    /// colony_harvest and colony_web (NOLOGIN group roles) and their grants in
    /// this database, and make the user of each role URL that is set a login
    /// member of its role, with the URL's password. Run it as the schema's
    /// owner with CREATEROLE, after `migrate`; safe to repeat (`migrate`
    /// renews the grants by itself once the roles exist). Then hand each
    /// part its own URL: the mothership passes COLONY_OBSERVER_DATABASE_URL
    /// and COLONY_HARVEST_DATABASE_URL to the cells it starts, a joining
    /// laptop gets only the harvest URL, and `serve` uses COLONY_WEB_DATABASE_URL.
    Roles(mothership::roles::RolesArgs),
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Add a channel; prints its id. Give its page on Twitch, YouTube or Kick
    /// (https://www.twitch.tv/NAME, https://www.youtube.com/@handle,
    /// https://www.youtube.com/channel/UC…, https://kick.com/NAME), or
    /// --platform with --login, or a live HLS playlist URL with --login.
    #[command(after_help = "Examples:\n  \
        mothership channel add https://www.twitch.tv/somestreamer\n  \
        mothership channel add --platform twitch --login somestreamer\n  \
        mothership channel add https://cdn.example.com/live/index.m3u8 --login mycam\n\n\
        A platform channel is probed through the platform's API when its credentials are set \
        (COLONY_TWITCH_CLIENT_ID and COLONY_TWITCH_CLIENT_SECRET), else with its resolver \
        (COLONY_RESOLVER_TWITCH, default `streamlink --stream-url {url} best`, whose program must be \
        on COLONY_RESOLVERS).")]
    Add {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The channel's page on Twitch, YouTube or Kick, or an HLS playlist URL.
        #[arg(value_name = "URL", conflicts_with = "source_url")]
        url: Option<String>,
        /// Its name in storage and commands: 1-64 of a-z, 0-9, '_', '-'. For a
        /// platform channel it defaults to the handle; with --platform it is
        /// the handle.
        #[arg(long, value_name = "NAME")]
        login: Option<String>,
        /// The platform of a channel named by --login: twitch, youtube or kick.
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
        /// A live HLS playlist URL, or the page a --resolver turns into one
        /// (the same as the URL argument).
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
        /// Display name (default: the login).
        #[arg(long, value_name = "DISPLAY")]
        name: Option<String>,
        /// The resolver profile that turns the page into its HLS URL: a name
        /// whose command this host and the cells' hosts define as
        /// COLONY_RESOLVER_<NAME> (e.g. COLONY_RESOLVER_MYCDN='yt-dlp
        /// --get-url {url}' for --resolver mycdn). The database stores the
        /// name only, never a command.
        #[arg(long, value_name = "PROFILE")]
        resolver: Option<String>,
        /// Variant of a master playlist: best, worst or a height like 720p.
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
        /// A host besides the source's own that its playlists may send Colony
        /// to, e.g. a CDN: cdn.example.com, or *.example.com for a domain and
        /// its subdomains. Repeat for more. Segment, key and variant URIs on
        /// any other host are refused (and recorded as gaps with that reason).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_host: Vec<String>,
        /// Record the video only: no chat archive (chat is recorded for
        /// Twitch channels by default).
        #[arg(long)]
        no_chat: bool,
    },
    /// List channels.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change a channel; only the flags given change. --resolver PROFILE names
    /// a resolver profile; --resolver '' clears it.
    Update {
        #[command(flatten)]
        db: DatabaseArgs,
        login: String,
        #[arg(long, value_name = "DISPLAY")]
        name: Option<String>,
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
        #[arg(long, value_name = "PROFILE")]
        resolver: Option<String>,
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
        /// Replace the channel's allowed hosts (repeat for more; --allow-host '' clears them).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_host: Vec<String>,
        /// Record the chat beside the video (true) or not (false).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        chat: Option<bool>,
    },
    /// Remove a channel that has no recordings (otherwise: disable it).
    Remove {
        #[command(flatten)]
        db: DatabaseArgs,
        login: String,
    },
    /// Record the channel when it is live (the default).
    Enable {
        #[command(flatten)]
        db: DatabaseArgs,
        login: String,
    },
    /// Stop recording the channel: the next tick stops its observer, which
    /// finalizes the recording.
    Disable {
        #[command(flatten)]
        db: DatabaseArgs,
        login: String,
    },
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Enqueue a job, e.g. `job enqueue vod-download --url URL --channel NAME`.
    Enqueue {
        #[command(flatten)]
        db: DatabaseArgs,
        /// vod-download, reencode, repair, export, thumbnails or archive-tier.
        kind: String,
        /// vod-download: the VOD's playlist URL.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// vod-download: the channel it belongs to.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// Other kinds: the job's arguments as a JSON object, e.g. '{"recording_id": 7}'.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
    },
    /// List jobs, newest first (succeeded ones only with --state succeeded).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run a dead, cancelled or failed job again, now.
    Retry {
        #[command(flatten)]
        db: DatabaseArgs,
        id: i64,
    },
    /// Cancel a job; a running one stops at its next heartbeat.
    Cancel {
        #[command(flatten)]
        db: DatabaseArgs,
        id: i64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match colony::exit::parse("mothership") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let mut log = cli.log.clone();
    // `up` narrates for people; its tick loop logs only what goes wrong.
    if matches!(cli.command, Command::Up(_)) && std::env::var_os("COLONY_LOG").is_none() && log.log_filter == "info" {
        log.log_filter = "warn".into();
    }
    colony::telemetry::init(&log);
    colony::exit::finish("mothership", run(cli.command).await)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate { db } => {
            let pool = colony::db::connect_unchecked(&db).await?;
            let report = mothership::migrate::run(&pool).await?;
            if report.applied.is_empty() {
                println!("schema is up to date at version {}; nothing to do", report.version);
            } else {
                println!("applied {} migration(s); schema is at version {}", report.applied.len(), report.version);
            }
            if mothership::roles::group_roles_exist(&pool).await? {
                mothership::roles::grant(&pool).await.map_err(classified)?;
                println!("renewed the grants of the colony's roles (colony_observer, colony_harvest, ...)");
            }
        }
        Command::Db(DbCommand::Roles(args)) => mothership::roles::run(&args).await?,
        Command::Check { db, storage } => {
            let pool = colony::db::connect(&db).await?;
            println!("postgres: {} (schema version {})", db.database_url, colony::db::binary_version());
            let store = colony::storage::open(&storage).await?;
            colony::storage::probe_writable(store.as_ref()).await.context("object storage is not writable")?;
            println!("storage:  {} (writable)", store.describe());
            drop(pool);
        }
        Command::Tick { tick, json } => {
            let setup = Setup::new(&tick).await?;
            match mothership::tick::tick(&setup.ctx(&tick)).await.context("tick failed")? {
                TickOutcome::Busy => show::busy(json),
                TickOutcome::Done(report) => {
                    show::tick(&report, json);
                    if report.failed_actions > 0 {
                        return Err(colony::exit::PartlyFailed(format!(
                            "{} action(s) failed; `mothership decisions --failed` says why",
                            report.failed_actions
                        ))
                        .into());
                    }
                }
            }
        }
        Command::Up(args) => up::up(args).await?,
        Command::Run { tick, every, json } => run_loop(&tick, every.into(), json).await?,
        Command::Status { db, platforms, json } => {
            let pool = colony::db::connect(&db).await?;
            let channels = views::channel_status(&pool).await.map_err(classified)?;
            let cells = views::cells(&pool, false, 1000).await.map_err(classified)?;
            let queue = colony::queue::Queue::new(pool.clone()).stats().await?;
            let detection = mothership::platform_api::detection(&platforms, &channels);
            show::status(&channels, &cells, &queue, &detection, json);
        }
        Command::Channel(c) => channel(c).await?,
        Command::Job(j) => job(j).await?,
        Command::Backfill { db, channel, urls_from: None, since, limit, platforms, .. } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let pool = colony::db::connect(&db).await?;
            let detectors = mothership::platform_api::Detectors::new(&platforms, &pool, Duration::from_secs(30));
            let listing = show::spinner("listing past broadcasts");
            let bar = show::progress(0, "enqueueing");
            let done = mothership::platform_api::backfill::queue_past_broadcasts(
                &pool,
                &channel,
                &detectors,
                since,
                limit,
                |n| listing.set_message(format!("listing past broadcasts: {n}")),
                |n| {
                    bar.set_length(n.max(bar.length().unwrap_or(0)));
                    bar.set_position(n)
                },
            )
            .await
            .map_err(classified)?;
            listing.finish_and_clear();
            bar.finish_and_clear();
            println!(
                "{} past broadcast(s) of {channel}: enqueued {} VOD download(s), {} already queued or done; \
                 {} were also recorded live",
                done.listed,
                done.created,
                done.listed - done.created,
                done.recorded_live
            );
        }
        Command::Backfill { db, channel, urls_from: Some(urls_from), .. } => {
            let text = if urls_from.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading URLs from standard input")?
            } else {
                std::fs::read_to_string(&urls_from)
                    .map_err(|e| Exit::config(format!("cannot read {}: {e}", urls_from.display())))?
            };
            let urls = backfill::parse_url_list(&text, &urls_from.display().to_string()).map_err(classified)?;
            if urls.is_empty() {
                return Err(Exit::config(format!("{} holds no URLs", urls_from.display())).into());
            }
            let pool = colony::db::connect(&db).await?;
            let bar = show::progress(urls.len() as u64, "enqueueing");
            let created =
                backfill::backfill(&pool, &channel, &urls, |done| bar.set_position(done)).await.map_err(classified)?;
            bar.finish_and_clear();
            println!(
                "enqueued {created} VOD download(s) for {channel}; {} already queued or done",
                urls.len() as u64 - created
            );
        }
        Command::Cells { db, all, limit, json } => {
            let pool = colony::db::connect(&db).await?;
            show::cells(&views::cells(&pool, all, limit).await.map_err(classified)?, json);
        }
        Command::Serve(args) => mothership::web::serve(args).await?,
        Command::Webhook(command) => mothership::webhook::run(command).await?,
        Command::Decisions { db, limit, failed, json } => {
            let pool = colony::db::connect(&db).await?;
            show::decisions(&views::decisions(&pool, limit, failed).await.map_err(classified)?, json);
        }
    }
    Ok(())
}

async fn channel(command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Add { db, url, login, platform, source_url, name, resolver, variant, allow_host, no_chat } => {
            let extras = ChannelExtras { name, resolver, variant, allowed_hosts: allow_host, no_chat };
            let url = url.or(source_url);
            let new = NewChannel::from_cli(url.as_deref(), login.as_deref(), platform.as_deref(), extras)
                .map_err(classified)?;
            let pool = colony::db::connect(&db).await?;
            println!("{}", channels::add(&pool, &new).await.map_err(classified)?);
        }
        ChannelCommand::List { db, json } => {
            let pool = colony::db::connect(&db).await?;
            show::channels(&views::channel_status(&pool).await.map_err(classified)?, json);
        }
        ChannelCommand::Update { db, login, name, source_url, resolver, variant, allow_host, chat } => {
            let pool = colony::db::connect(&db).await?;
            let allowed_hosts = (!allow_host.is_empty()).then_some(allow_host);
            let update = ChannelUpdate { name, source_url, resolver, variant, allowed_hosts, chat };
            channels::update(&pool, &login, &update).await.map_err(classified)?;
            println!("channel {login} updated");
        }
        ChannelCommand::Remove { db, login } => {
            let pool = colony::db::connect(&db).await?;
            channels::remove(&pool, &login).await.map_err(classified)?;
            println!("channel {login} removed");
        }
        ChannelCommand::Enable { db, login } => {
            let pool = colony::db::connect(&db).await?;
            channels::set_enabled(&pool, &login, true).await.map_err(classified)?;
            println!("channel {login} enabled: the next tick records it when it is live");
        }
        ChannelCommand::Disable { db, login } => {
            let pool = colony::db::connect(&db).await?;
            channels::set_enabled(&pool, &login, false).await.map_err(classified)?;
            println!("channel {login} disabled: the next tick stops its observer, which finalizes the recording");
        }
    }
    Ok(())
}

async fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Enqueue { db, kind, url, channel, args } => {
            let pool = colony::db::connect(&db).await?;
            match backfill::enqueue(&pool, &kind, url.as_deref(), channel.as_deref(), args.as_deref())
                .await
                .map_err(classified)?
            {
                colony::queue::Enqueued::Created(id) => println!("{id}"),
                colony::queue::Enqueued::Duplicate(id) => println!("{id} (already queued or done)"),
            }
        }
        JobCommand::List { db, state, kind, limit, json } => {
            let pool = colony::db::connect(&db).await?;
            show::jobs(&views::jobs(&pool, state.as_deref(), kind.as_deref(), limit).await.map_err(classified)?, json);
        }
        JobCommand::Retry { db, id } => {
            let pool = colony::db::connect(&db).await?;
            match colony::queue::Queue::new(pool).retry(id).await.map_err(classified)? {
                None => println!("job {id} will run again"),
                Some(until) => println!(
                    "job {id} will run again once its cancelled run has stopped (at {} at the latest, when its lease ends)",
                    until.format("%H:%M:%S UTC")
                ),
            }
        }
        JobCommand::Cancel { db, id } => {
            let pool = colony::db::connect(&db).await?;
            match colony::queue::Queue::new(pool).cancel(id).await.map_err(classified)? {
                CancelOutcome::Cancelled => {
                    println!("job {id} cancelled; a worker running it stops at its next lease renewal")
                }
                CancelOutcome::AlreadyFinal(state) => println!("job {id} is already {state:?}; nothing to cancel"),
                CancelOutcome::NotFound => {
                    return Err(Exit::config(format!("there is no job {id}; `mothership job list` shows them")).into());
                }
            }
        }
    }
    Ok(())
}

/// `--since`: a date (midnight UTC) or an RFC 3339 time.
fn parse_since(raw: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| Exit::config(format!("--since '{raw}' is not a date (2026-11-01) or an RFC 3339 time")).into())
}

async fn run_loop(args: &TickArgs, every: Duration, json: bool) -> anyhow::Result<()> {
    let setup = Setup::new(args).await?;
    tracing::info!(every = %humantime::format_duration(every), launcher = setup.launcher.backend(), "mothership running");
    let show = |outcome: TickOutcome| match outcome {
        TickOutcome::Busy => show::busy(json),
        TickOutcome::Done(report) => show::tick(&report, json),
    };
    tick_loop(&setup, args, every, show, colony::signals::stop_signal().context("installing the SIGTERM handler")?)
        .await;
    tracing::info!("mothership stopping; the cells keep running");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Clap's own checks of the whole command tree (unique argument ids,
    /// valid defaults), which otherwise only fail when a command runs.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
