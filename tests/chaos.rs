//! The chaos suite, short form (issue 12): a whole colony — two `mothership
//! run` loops, the process launcher, observers recording three live
//! channels, harvest cells working a backfill — on a private Postgres and
//! Garage, under every fault of [`Fault::ALL`] in a seeded order: a
//! blackholed Postgres longer than the heartbeat timeout, Garage stopped
//! 30 s, SIGKILL of observers and harvest cells, a SIGSTOPped observer that
//! wakes after its replacement, `job cancel` + `job retry` on a running job,
//! Postgres stopped 30 s. Then it counts segments published vs stored,
//! duplicates, gaps, damaged objects, jobs executed twice or lost and
//! recordings left open: every loss column must be 0.
//!
//! `COLONY_CHAOS_SEED` picks another seed; `chaos-bench --minutes 30` is the soak.

use colony_tests::chaos::{self, Config, Fault};

#[tokio::test(flavor = "multi_thread")]
async fn a_colony_under_faults_loses_nothing() {
    let seed = std::env::var("COLONY_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let report = chaos::run(&Config::short(seed)).await;
    let summary = report.summary();
    eprintln!("{summary}\n{}", report.timeline.join("\n"));
    for fault in Fault::ALL {
        assert!(report.injected.get(&fault).copied().unwrap_or(0) > 0, "{fault:?} was never injected\n{summary}");
    }
    assert!(report.published > 300, "the channels ran through the whole run\n{summary}");
    assert!(report.jobs >= 9, "the backfill ran\n{summary}");
    assert_eq!(report.losses(), 0, "the colony lost or doubled something\n{summary}\n{}", report.timeline.join("\n"));
}
