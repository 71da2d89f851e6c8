//! Every bench binary in a tiny form, so none of them can rot unseen
//! (issue 24): `benches/report --tiny` runs each one against the real
//! components it measures (Postgres, the live test source, ffmpeg, and
//! streamlink beside the observer) with sizes small enough for CI. Each
//! must exit 0 and print its figures: the chat bench fails by itself when a
//! message the fake chat sent is not stored, the week bench reports its
//! ledger holes. The figures mean nothing at this size; the standard forms
//! (`benches/report` without `--tiny`) write docs/BENCHMARKS.md.
//!
//! `chaos-bench` is the one exception: its engine is `tests/chaos.rs`, which
//! CI runs whole; here it only has to start and explain itself.

use std::time::Duration;

use colony_tests::bins::bin;

#[tokio::test]
async fn every_bench_runs_in_its_tiny_form() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let target = bin("queue-bench").parent().unwrap().parent().unwrap().to_owned();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tokio::process::Command::new(root.join("benches/report"));
    cmd.args(["--tiny", "--no-build", "--profile", "debug", "--log"])
        .arg(log.path())
        .env("CARGO_TARGET_DIR", &target)
        .env("BENCH_DATABASE_URL", colony_tests::pg::server_url())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("benches/report --tiny ran longer than 15 minutes")
        .expect("run benches/report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let whole = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(out.status.success(), "benches/report --tiny failed:\n{stderr}\n\nthe runs' output:\n{whole}");
    for name in [
        "queue",
        "tick",
        "platform",
        "playlist",
        "fuzz",
        "observer",
        "harvest-download",
        "harvest-ladder",
        "chat",
        "week-tmpfs",
        "week-disk",
    ] {
        let begin = format!("<!-- report:{name} begin -->");
        let section = stdout.split(&begin).nth(1).and_then(|s| s.split("<!-- report:").next());
        let section = section.unwrap_or_else(|| panic!("no section for {name}:\n{stdout}"));
        assert!(
            section.lines().skip(1).any(|l| l.chars().any(|c| c.is_ascii_digit())),
            "{name} printed no figures:\n{section}"
        );
    }
    let observer = stdout.split("<!-- report:observer begin -->").nth(1).unwrap();
    let observer = observer.split("<!-- report:observer end -->").next().unwrap();
    for peer in ["streamlink", "ffmpeg"] {
        assert!(observer.contains(peer), "the observer bench measured no {peer}:\n{observer}");
    }
    assert!(!stdout.contains("LEDGER HOLES"), "the week bench found holes:\n{stdout}");
}

#[tokio::test]
async fn chaos_bench_explains_itself() {
    let out = tokio::process::Command::new(bin("chaos-bench")).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--minutes") && help.contains("--seed"), "{help}");
}
