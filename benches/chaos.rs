//! The chaos soak: the chaos suite of `tests/chaos.rs` at length (30
//! minutes by default), on the real colony, Postgres, Garage and the live
//! test source. Prints the timeline as it goes and the loss table at the end,
//! and exits 1 if anything was lost or doubled.
//!
//!     cargo build --workspace --release
//!     cargo run --release -p colony-bench --bin chaos-bench -- --minutes 30 --seed 7
//!
//! It runs the workspace's binaries of the same profile (build them first).

use clap::Parser;
use colony_tests::chaos::{Config, run};

#[derive(Debug, Parser)]
struct Args {
    /// Minutes of faults; the settle comes after.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seed for the order, timing and targets of the faults.
    #[arg(long, default_value_t = 12)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("chaos soak: {} minute(s) of faults, seed {}", args.minutes, args.seed);
    let report = run(&Config::soak(args.seed, args.minutes)).await;
    println!("{}", report.summary());
    if report.losses() > 0 {
        anyhow::bail!("{} segment(s) or job(s) lost or doubled", report.losses());
    }
    if let Some(blind) = report.blind_spots().first() {
        anyhow::bail!("the audit cannot vouch for this run: {blind}");
    }
    if let Some(fault) = colony_tests::chaos::Fault::ALL.iter().find(|f| !report.injected.contains_key(f)) {
        anyhow::bail!("{fault:?} was never seen to take effect");
    }
    Ok(())
}
