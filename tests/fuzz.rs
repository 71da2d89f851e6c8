//! A short fuzzing pass in CI over the playlist parsers and the tracker, and
//! over the chat's IRC parser: random, grammar-built and mutated playlists
//! and Twitch lines; no panic, caught or not, and bounded allocation per
//! input. `COLONY_FUZZ_CASES` sets the count (20,000
//! by default); the `fuzz-bench` binary runs a million and more.

use colony_tests::fuzz::{CountingAllocator, run, run_irc};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn playlists_from_anywhere_never_panic_and_allocate_within_bounds() {
    let cases = std::env::var("COLONY_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let started = std::time::Instant::now();
    let report = run(cases).unwrap_or_else(|e| panic!("fuzzing found a counterexample: {e}"));
    eprintln!("fuzz: {report:?} in {:.1?}", started.elapsed());
    assert_eq!(report.cases, cases as usize);
    assert!(report.parsed > 0, "no generated playlist parsed: the generator is broken");
}

#[test]
fn irc_lines_from_anywhere_never_panic_and_stay_within_their_caps() {
    let cases = std::env::var("COLONY_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let started = std::time::Instant::now();
    let report = run_irc(cases).unwrap_or_else(|e| panic!("fuzzing found a counterexample: {e}"));
    eprintln!("irc fuzz: {report:?} in {:.1?}", started.elapsed());
    assert_eq!(report.cases, cases as usize);
    assert!(report.messages > 0, "no generated line became a message: the generator is broken");
    assert!(report.refused > 0, "no generated line was refused: the generator is too tame");
}
