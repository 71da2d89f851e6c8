//! `observer-cell`: records one live channel. A thin shell over
//! the `observer_cell` library: parse the contract, connect, record, exit with the
//! code DESIGN.md fixes (0 done, 2 bad configuration, 3 fenced out, 1 other).
//! `observer-cell --check` checks the host instead (`observer_cell::check`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use colony::config::{DatabaseArgs, StartArgs};
use colony::exit::Exit;
use colony::resolver::Resolvers;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;
use observer_cell::ObserverArgs;

/// An observer cell records one live channel natively from HLS into object
/// storage, writing every segment to the ledger and heartbeating while it
/// runs. When the source goes offline it stands by (--standby) so a quick
/// reconnect continues the same recording; then it finalizes the recording,
/// enqueues the channel's post-processing and exits 0. SIGTERM finalizes the
/// recording as interrupted. The mothership starts observer cells; run one by
/// hand only to test a deployment.
#[derive(Debug, Parser)]
#[command(name = "observer-cell", version)]
#[command(after_help = "To check a host or image instead, without an assignment or a database: \
    observer-cell --check [--resolvers PROGRAMS] [--json] prints ffmpeg's version and each platform's \
    resolver program, whether COLONY_RESOLVERS allows it and its version (see observer-cell --check --help).

Exit codes: 0 finalized, 1 failure, 2 bad configuration, 3 replaced by another cell (fenced out).")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    start: StartArgs,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    observer: ObserverArgs,
}

/// Check this host or image without recording: print the observer's
/// version, ffmpeg's, and for each platform its live and VOD resolver
/// template, the program it runs, whether the allow-list lets it run and the
/// program's version. Needs no assignment and no database.
#[derive(Debug, Parser)]
#[command(name = "observer-cell", version)]
#[command(after_help = "Exit codes: 0 every platform's live resolver is on PATH and allowed, \
    2 one is not (the last line says what to fix).")]
struct CheckCli {
    /// Check this host instead of recording.
    #[arg(long, required = true)]
    check: bool,
    /// Print the report as one JSON object instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    resolvers: Resolvers,
}

fn main() -> ExitCode {
    // SAFETY: nothing else runs yet; the runtime starts below.
    unsafe { observer_cell::accept_old_names() };
    // `--check` has its own parser: the recording's flags are required
    // everywhere else, and a check must not need them.
    if std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--check") {
        return check();
    }
    let cli: Cli = match colony::exit::parse("observer-cell") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    colony::telemetry::init(&cli.log);
    // One thread does the recording's async work; file writes and fsyncs go
    // to a small blocking pool. Its size bounds the threads (and their
    // allocator arenas) however many segments arrive at once.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(cli.observer.concurrency.max(1) * 2 + 4)
        .build();
    match runtime {
        Ok(runtime) => colony::exit::finish("observer-cell", runtime.block_on(run(cli))),
        Err(e) => colony::exit::finish("observer-cell", Err(anyhow::Error::from(e).context("starting the runtime"))),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let pool = colony::db::connect_within(&cli.db, cli.start.start_grace.into()).await?;
    // Storage that does not answer at start is what the spool is for: a
    // replacement launched during an outage records from its first second.
    let store = colony::storage::open_or_spool(&cli.storage, std::time::Duration::from_secs(3)).await?;
    let stop = colony::signals::stop_token().context("installing the SIGTERM handler")?;
    let end = observer_cell::run(cli.observer, pool, store, stop).await?;
    end.into_result().map_err(colony::exit::classified)
}

fn check() -> ExitCode {
    let cli: CheckCli = match colony::exit::parse("observer-cell") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let report = match runtime {
        Ok(runtime) => runtime.block_on(observer_cell::check::run(&cli.resolvers)),
        Err(e) => {
            return colony::exit::finish("observer-cell", Err(anyhow::Error::from(e).context("starting the runtime")));
        }
    };
    let problems = report.problems();
    if cli.json {
        let json = serde_json::json!({ "ok": problems.is_empty(), "report": report, "problems": problems });
        println!("{json}");
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    if problems.is_empty() {
        if !cli.json {
            println!("ok: every platform's live resolver is on PATH and allowed");
        }
        return ExitCode::SUCCESS;
    }
    let fixes: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let message = format!("a live resolver cannot run here: {}", fixes.join("; "));
    colony::exit::finish("observer-cell", Err(Exit::config(message).into()))
}
