//! Fuzzing at length: the same generators and checks as `tests/fuzz.rs`
//! (grammar-built, mutated and garbage playlists through both parsers and
//! the tracker; no panic, caught or not; allocation within
//! `colony_tests::fuzz::allocation_bound`), for a million cases or more.
//!
//!     cargo run --release -p colony-bench --bin fuzz-bench -- --cases 1000000

use clap::Parser;
use colony_tests::fuzz::{CountingAllocator, run};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Debug, Parser)]
struct Args {
    /// Cases to run; each parses one to six playlists and feeds them to a tracker.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u32,
    /// Cases per batch, for progress lines.
    #[arg(long, default_value_t = 100_000)]
    batch: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let mut done = 0u32;
    let mut totals = colony_tests::fuzz::FuzzReport::default();
    while done < args.cases {
        let n = args.batch.min(args.cases - done).max(1);
        let report = run(n).map_err(|e| anyhow::anyhow!("counterexample after {done} cases: {e}"))?;
        done += n;
        totals.cases += report.cases;
        totals.inputs += report.inputs;
        totals.parsed += report.parsed;
        totals.largest_input = totals.largest_input.max(report.largest_input);
        totals.peak_alloc = totals.peak_alloc.max(report.peak_alloc);
        totals.worst_bytes_per_input_byte = totals.worst_bytes_per_input_byte.max(report.worst_bytes_per_input_byte);
        eprintln!("{done} of {} cases, no failure ({:.0?})", args.cases, started.elapsed());
    }
    println!(
        "fuzz: {} cases, {} playlists parsed ({} media playlists), 0 panics, 0 allocation-bound failures; \
         largest input {} B, peak allocation of one parse {} B, worst {:.1} B allocated per input byte; {:.0?}",
        totals.cases,
        totals.inputs,
        totals.parsed,
        totals.largest_input,
        totals.peak_alloc,
        totals.worst_bytes_per_input_byte,
        started.elapsed()
    );
    Ok(())
}
