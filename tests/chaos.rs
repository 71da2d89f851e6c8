//! The chaos suite, short form (issues 12 and 24): a whole colony — two
//! `mothership run` loops in one network namespace, the process launcher,
//! observers recording three live channels and harvest cells working a
//! backfill in another — on a private Postgres and Garage, under every fault
//! of [`Fault::ALL`] in a seeded order: packets dropped between the cells and
//! Postgres, Garage or the source, and between the mothership and Postgres,
//! one at a time and all at once; Garage and Postgres stopped; SIGKILL of
//! observers and harvest cells; a SIGSTOPped observer that wakes after its
//! replacement; `job cancel` + `job retry` on a running job; launches that
//! fail. A fault counts only once the test saw its effect.
//!
//! Then the audit, on evidence the colony did not write: every stored live
//! segment and every downloaded VOD read back through the S3 API and
//! compared byte for byte with what the source served (stamped per channel
//! and sequence), and executions rebuilt from the origin's request log tied
//! to processes through the kernel's socket tables. Every loss column must
//! be 0, and the audit must not be blind: its trace has to find at least as
//! many executions as there were successes.
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
        assert!(
            report.injected.get(&fault).copied().unwrap_or(0) > 0,
            "{fault:?} was never seen to take effect\n{summary}"
        );
    }
    assert!(report.published > 300, "the channels ran through the whole run\n{summary}");
    assert!(report.jobs >= 9, "the backfill ran\n{summary}");
    assert!(report.vods_succeeded >= 5, "downloads finished\n{summary}");
    assert!(report.blind_spots().is_empty(), "the audit cannot vouch for this run\n{summary}");
    assert_eq!(report.losses(), 0, "the colony lost or doubled something\n{summary}\n{}", report.timeline.join("\n"));
}

/// The audit compares bytes, not sizes (issue 24, finding 4). An object
/// filed under the wrong sequence number, exactly as long as the right one
/// (the source cycles its media files; only the stamp differs), is damaged;
/// so is a missing one. The old audit compared an object's size with the
/// ledger's own byte count, and passed the first.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_tells_a_segment_from_another_of_the_same_size() {
    use colony_tests::live::{Container, LiveSource, Profile, media};
    let g = tokio::task::spawn_blocking(colony_tests::garage::garage).await.unwrap();
    let clip = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let source = LiveSource::start().await;
    let cycle = clip.segments.len() as u64;
    source.add("audit", &clip, cycle as usize + 2);
    source.stamp("audit");
    let (right, wrong) = (source.segment_bytes("audit", 1).unwrap(), source.segment_bytes("audit", 1 + cycle).unwrap());
    assert_eq!(right.len(), wrong.len(), "the same media file, the same size");
    assert_ne!(right, wrong, "the stamps differ");
    let s3 = g.client();
    let prefix = format!("audit-{}", uuid::Uuid::new_v4().simple());
    for (name, bytes) in [("right", &right), ("wrong", &wrong)] {
        s3.put_object()
            .bucket(&g.bucket)
            .key(format!("{prefix}/{name}.ts"))
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
    }
    let served = || source.segment_bytes("audit", 1);
    chaos::verify(&s3, &g.bucket, &format!("{prefix}/right.ts"), served()).await.unwrap();
    let damaged = chaos::verify(&s3, &g.bucket, &format!("{prefix}/wrong.ts"), served()).await.unwrap_err();
    assert!(damaged.contains("not the same bytes"), "{damaged}");
    let missing = chaos::verify(&s3, &g.bucket, &format!("{prefix}/none.ts"), served()).await.unwrap_err();
    assert!(missing.contains("GET"), "{missing}");
}
