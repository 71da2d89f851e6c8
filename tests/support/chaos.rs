//! The chaos suite's engine: a whole colony under faults, then an audit of
//! what it kept that trusts nothing the colony says about itself.
//!
//! The colony is real: two `mothership run` loops at once on the process
//! launcher, observer and harvest cells, a private PostgreSQL cluster (so it
//! can be stopped), a private Garage node (stopped and started again), the
//! live test source with live channels and finished VODs for backfill.
//!
//! The partitions are real too. The cells run in one network namespace and
//! both mothership loops in another ([`CellNet`]); every server listens on
//! the host's loopback and each namespace reaches it through a veth pair.
//! A cut is an nftables drop of every packet between a namespace and one
//! port: cells→Postgres, cells→Garage, cells→the source and VOD origin,
//! mothership→Postgres, and all four at once. No proxy sits in between.
//!
//! Faults come in a seeded random order, each kind once per round, with
//! seeded pauses between them, until the chaos time is up ([`Fault::ALL`]).
//! A fault counts as injected only when the test saw its effect with its own
//! eyes: packets the kernel dropped, a process the kernel lists as gone or
//! stopped, a replacement process that appeared, a server that refused a
//! connection, a launch the test's wrapper refused, a CLI call that
//! succeeded. Then the live channels end, the colony settles, and
//! [`Report`] counts what was lost.
//!
//! The audit's evidence is the test's own:
//! - every live segment the ledger names is read back through the S3 API
//!   and compared byte for byte with what the source served (each served
//!   segment carries a stamp of its channel and sequence number, so a
//!   segment filed under the wrong number cannot pass);
//! - every VOD download counts as done only when storage holds every
//!   segment of the VOD, byte for byte as the origin served it;
//! - executions of the downloads are rebuilt from the origin's request log,
//!   each request tied to the process that sent it through the kernel's
//!   socket tables; the run fails if that trace finds fewer executions than
//!   jobs succeeded. The cells' logs are read too, as a second opinion, and
//!   held to the same floor.
//!
//! Every wait is bounded: a run stops by itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio::process::Child;

use crate::bins::bin;
use crate::kernel;
use crate::live::{Container, LiveSource, Profile, Request, media};
use crate::mothership::Colony;
use crate::netns::{CellNet, port_of};
use crate::observer::Rig;
use crate::pg::Role;
use crate::pg::TestDb;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// How long faults are injected; the settle comes after.
    pub chaos: Duration,
    pub live_channels: usize,
    /// VOD downloads kept outstanding (queued or running) during the chaos.
    pub backfills: usize,
    /// The live source's window, in 1-second segments.
    pub window: usize,
    /// Pause between two faults, in seconds (drawn from the range).
    pub pause: (u64, u64),
    /// The longest the settle may take.
    pub settle: Duration,
}

impl Config {
    /// The form CI runs: every fault kind at least once, in about four minutes.
    pub fn short(seed: u64) -> Self {
        Self { seed, chaos: SECS(215), live_channels: 3, backfills: 5, window: 20, pause: (2, 5), settle: SECS(240) }
    }

    /// A soak of `minutes`.
    pub fn soak(seed: u64, minutes: u64) -> Self {
        Self { chaos: SECS(minutes * 60), pause: (5, 20), ..Self::short(seed) }
    }
}

/// A fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    CutCellsPostgres,
    CutCellsStorage,
    CutCellsSource,
    CutMothershipPostgres,
    CutEverything,
    StopStorage,
    StopPostgres,
    KillObserver,
    KillHarvest,
    FreezeObserver,
    CancelRetry,
    FailLaunches,
}

/// How long a cut lasts: longer than the heartbeat timeout (8 s), and
/// shorter than the source's window (20 s) by more than a reload or two, so
/// the segments in flight when the cut began can still be fetched after it.
/// A colony that hands over without a hole then loses nothing.
const CUT: Duration = Duration::from_secs(12);
/// A cut from the source is shorter: the observer needs a few seconds after
/// it to fetch what the window still holds.
const CUT_SOURCE: Duration = Duration::from_secs(10);
const STOP: Duration = Duration::from_secs(30);
const FREEZE: Duration = Duration::from_secs(16);
const FAIL_LAUNCHES: Duration = Duration::from_secs(6);
const FAIL_LAUNCHES_MAX: Duration = Duration::from_secs(20);
/// How long past the chaos time the run goes on injecting kinds whose
/// effect it has not seen yet.
const OVERTIME: Duration = Duration::from_secs(150);

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::CutCellsPostgres,
        Fault::CutCellsStorage,
        Fault::CutCellsSource,
        Fault::CutMothershipPostgres,
        Fault::CutEverything,
        Fault::StopStorage,
        Fault::StopPostgres,
        Fault::KillObserver,
        Fault::KillHarvest,
        Fault::FreezeObserver,
        Fault::CancelRetry,
        Fault::FailLaunches,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::CutCellsPostgres => "cells→Postgres packets dropped, 12 s (heartbeat timeout 8 s)",
            Fault::CutCellsStorage => "cells→Garage packets dropped, 12 s",
            Fault::CutCellsSource => "cells→source and VOD origin packets dropped, 10 s (window 20 s)",
            Fault::CutMothershipPostgres => "mothership→Postgres packets dropped, 12 s",
            Fault::CutEverything => "all four cuts at once, 12 s",
            Fault::StopStorage => "Garage stopped, 30 s",
            Fault::StopPostgres => "Postgres stopped (immediate), 30 s",
            Fault::KillObserver => "SIGKILL of an observer",
            Fault::KillHarvest => "SIGKILL of a harvest cell",
            Fault::FreezeObserver => "SIGSTOP of an observer until its replacement runs (16 s), then SIGCONT",
            Fault::CancelRetry => "`job cancel` then `job retry` on a running job",
            Fault::FailLaunches => {
                "every cell launch fails (exit 70) for 6 s or until one was refused (at most 20 s), after a harvest cell is killed"
            }
        }
    }
}

/// What a run injected and what the colony kept.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub seed: u64,
    /// When the faults began: the origin of every `t+` in the report.
    pub started_at: Option<SystemTime>,
    pub chaos_secs: u64,
    pub settle_secs: u64,
    /// Each kind of fault with how often its effect was seen.
    pub injected: BTreeMap<Fault, u32>,
    /// Faults with nothing to hit at that moment (no running job, say), or
    /// whose effect the test did not see: they do not count as injected.
    pub skipped: BTreeMap<Fault, u32>,
    pub timeline: Vec<String>,
    /// Live segments the source published, and how many storage holds
    /// byte for byte as served.
    pub published: u64,
    pub stored: u64,
    /// Stored live objects read back through the S3 API and compared.
    pub hashed: u64,
    /// Published but neither stored nor a gap row.
    pub missing: u64,
    /// The missing runs: channel, sequences, and when the source published them.
    pub missing_list: Vec<String>,
    /// Each live recording the ledger holds: its channel, sequences and times.
    pub recordings: Vec<String>,
    /// Where the run's logs were kept, when something was lost.
    pub kept_logs: Option<PathBuf>,
    /// Source segments held by more than one ledger row.
    pub duplicates: u64,
    /// Segments the ledger records as gaps, and why.
    pub gap_segments: u64,
    pub gap_reasons: BTreeMap<String, u64>,
    /// Rows adopted from storage after their writer was fenced or killed.
    pub adopted: u64,
    /// Ledger rows whose object is missing or is not what the source served.
    pub damaged: u64,
    pub damaged_list: Vec<String>,
    /// Segment objects in storage that no ledger row names.
    pub unledgered: u64,
    pub jobs: u64,
    pub jobs_succeeded: u64,
    /// Jobs not done at the end: dead, or never finished.
    pub jobs_lost: Vec<String>,
    /// VOD downloads whose job succeeded, and of those, how many storage
    /// holds whole and byte for byte as the origin served them.
    pub vods_succeeded: u64,
    pub vods_verified: u64,
    /// Succeeded downloads storage does not hold whole: what is wrong.
    pub vods_unverified: Vec<String>,
    /// Executions of VOD downloads the origin's request log shows, and
    /// requests it could not tie to a process.
    pub traced_executions: u64,
    pub traced_requests: u64,
    pub unattributed_requests: u64,
    /// Executions the cells' logs show (a second opinion).
    pub log_executions: u64,
    /// Jobs whose success was recorded by more than one execution (logs).
    pub jobs_done_twice: u64,
    /// A process asked the origin for a VOD after another execution of the
    /// same download had begun asking (trace).
    pub overlapping_runs: Vec<String>,
    /// Executions beyond the first (after a kill, a lost lease, a retry), by the trace.
    pub reruns: u64,
    pub recordings_open: u64,
    pub observers_started: u64,
    pub harvest_started: u64,
    /// Launches the test's wrapper refused.
    pub launches_refused: u64,
    /// How the cells ended: "harvest exited (0)" → count.
    pub cell_ends: BTreeMap<String, u64>,
}

impl Report {
    /// Everything that counts as lost or doubled. The goal is 0.
    pub fn losses(&self) -> u64 {
        self.missing
            + self.duplicates
            + self.gap_segments
            + self.damaged
            + self.jobs_lost.len() as u64
            + self.vods_unverified.len() as u64
            + self.jobs_done_twice
            + self.overlapping_runs.len() as u64
            + self.recordings_open
    }

    /// Why the audit cannot vouch for the run, if it cannot: a trace that
    /// found fewer executions than successes, or objects not read back.
    pub fn blind_spots(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.traced_executions < self.vods_succeeded {
            out.push(format!(
                "the origin's request log shows {} execution(s) for {} succeeded download(s)",
                self.traced_executions, self.vods_succeeded
            ));
        }
        if self.log_executions < self.vods_succeeded {
            out.push(format!(
                "the cells' logs show {} execution(s) for {} succeeded download(s)",
                self.log_executions, self.vods_succeeded
            ));
        }
        if self.hashed < self.stored {
            out.push(format!("{} stored segment(s) were never read back", self.stored - self.hashed));
        }
        out
    }

    /// The figures, for people and for docs/RELIABILITY.md.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self.injected.iter().map(|(f, n)| format!("  {n:>3} x {}", f.name())).collect();
        let skipped: Vec<String> = self.skipped.iter().map(|(f, n)| format!("{n} x {f:?}")).collect();
        format!(
            "chaos run, seed {seed}: {chaos} s of faults, settled in {settle} s\n\
             faults seen to take effect (plus two `mothership run` loops throughout):\n{faults}\n\
             skipped (nothing to hit, or no effect seen): {skipped}\n\
             cells started: {obs} observers, {harv} harvest; launches refused: {refused}\n\
             | published | stored (hashed) | missing | duplicates | gap segments | damaged | unledgered | adopted | jobs | done | lost | VODs verified | done twice | overlapping runs | executions (trace / logs) | reruns | recordings left open |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|\n\
             | {published} | {stored} ({hashed}) | {missing} | {duplicates} | {gaps} | {damaged} | {unledgered} | {adopted} | {jobs} | {done} | {lost} | {verified} of {vods} | {twice} | {overlap} | {traced} / {logged} | {reruns} | {open} |\n\
             origin requests traced: {requests}, not tied to a process: {unattributed}\n\
             cells ended: {ends:?}\n\
             gap reasons: {reasons:?}\n\
             missing: {missing_list:?}\n\
             live recordings: {recordings:?}\n\
             logs kept in: {kept:?}\n\
             damaged: {damaged_list:?}\n\
             jobs lost: {lost_list:?}\n\
             VODs not verified: {unverified:?}\n\
             overlapping runs: {overlap_list:?}\n\
             blind spots: {blind:?}",
            seed = self.seed,
            chaos = self.chaos_secs,
            settle = self.settle_secs,
            faults = faults.join("\n"),
            skipped = if skipped.is_empty() { "none".into() } else { skipped.join(", ") },
            obs = self.observers_started,
            harv = self.harvest_started,
            refused = self.launches_refused,
            published = self.published,
            stored = self.stored,
            hashed = self.hashed,
            missing = self.missing,
            duplicates = self.duplicates,
            gaps = self.gap_segments,
            damaged = self.damaged,
            unledgered = self.unledgered,
            adopted = self.adopted,
            jobs = self.jobs,
            done = self.jobs_succeeded,
            lost = self.jobs_lost.len(),
            verified = self.vods_verified,
            vods = self.vods_succeeded,
            twice = self.jobs_done_twice,
            overlap = self.overlapping_runs.len(),
            traced = self.traced_executions,
            logged = self.log_executions,
            reruns = self.reruns,
            open = self.recordings_open,
            requests = self.traced_requests,
            unattributed = self.unattributed_requests,
            reasons = self.gap_reasons,
            ends = self.cell_ends,
            damaged_list = self.damaged_list,
            missing_list = self.missing_list,
            recordings = self.recordings,
            kept = self.kept_logs,
            lost_list = self.jobs_lost,
            unverified = self.vods_unverified,
            overlap_list = self.overlapping_runs,
            blind = self.blind_spots(),
        )
    }
}

/// A private Postgres cluster the run may stop, removed at the end.
struct PrivatePg {
    dir: PathBuf,
    admin: String,
}

impl PrivatePg {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("colony-chaos-pg-{}", uuid::Uuid::new_v4().simple()));
        let d = dir.clone();
        let admin = tokio::task::spawn_blocking(move || crate::pg::start_cluster(&d, &["fsync=off"])).await.unwrap();
        Self { dir, admin }
    }

    async fn stop(&self) {
        let d = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::pg::stop_cluster(&d)).await.unwrap();
    }

    async fn restart(&self) {
        let d = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::pg::restart_cluster(&d)).await.unwrap();
    }
}

/// A Garage node of the run's own, so stopping it never disturbs another
/// test; stopped and removed at the end.
struct PrivateGarage {
    dir: PathBuf,
    node: crate::garage::Garage,
}

impl PrivateGarage {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("colony-chaos-garage-{}", uuid::Uuid::new_v4().simple()));
        let d = dir.clone();
        let node = tokio::task::spawn_blocking(move || crate::garage::start(&d)).await.unwrap();
        Self { dir, node }
    }
}

impl Drop for PrivateGarage {
    fn drop(&mut self) {
        self.node.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("lock"));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let d = self.dir.clone();
        let _ = std::panic::catch_unwind(move || crate::pg::stop_cluster(&d));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("lock"));
    }
}

/// Settings of the colony under test: fast enough to see replacements
/// within the source's window, with leases short enough to rescue quickly.
/// The standby (30 s) outlasts every cut: a source the cells cannot reach
/// for 12 s is not a broadcast that ended.
const COLONY_ENV: &[(&str, &str)] = &[
    ("COLONY_LOG_FORMAT", "json"),
    ("COLONY_LOG", "info,colony=info,aws=warn,sqlx=warn"),
    ("COLONY_HEARTBEAT_TIMEOUT", "8s"),
    ("COLONY_HEARTBEAT_INTERVAL", "1s"),
    ("COLONY_START_GRACE", "10s"),
    ("COLONY_START_BACKOFF", "1s"),
    ("COLONY_MAX_HARVEST", "2"),
    ("COLONY_JOBS_PER_HARVEST_CELL", "2"),
    ("COLONY_TICK_DEADLINE", "20s"),
    ("COLONY_STATEMENT_TIMEOUT", "10s"),
    ("COLONY_DB_CONNECT_TIMEOUT", "3s"),
    ("HARVEST_LEASE", "20s"),
    ("HARVEST_IDLE_EXIT", "10s"),
    ("HARVEST_POLL", "500ms"),
    ("OBSERVER_STANDBY", "30s"),
    ("OBSERVER_OFFLINE_AFTER", "5s"),
    ("OBSERVER_FINALIZE_DEADLINE", "120s"),
    ("OBSERVER_SHUTDOWN_DEADLINE", "15s"),
    ("OBSERVER_WRITE_LEASE", "4s"),
];

/// The servers' ports, which the cuts name.
#[derive(Debug, Clone, Copy)]
struct Ports {
    postgres: u16,
    storage: u16,
    source: u16,
}

/// The launch wrapper's switch: while `gate` exists, every cell launch
/// fails at once (exit 70) and is logged in `refused`.
struct Launches {
    gate: PathBuf,
    refused: PathBuf,
}

impl Launches {
    fn refused(&self) -> u64 {
        std::fs::read_to_string(&self.refused).map(|t| t.lines().count() as u64).unwrap_or(0)
    }
}

/// A script that runs `bin` in the cells' namespace, unless launches are
/// failing: the process launcher's cell binary.
fn launch_wrapper(dir: &Path, net: &CellNet, bin: &Path, launches: &Launches) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let script = dir.join(format!("launch-{name}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {gate} ]; then echo \"refused {name}\" >> {refused}; exit 70; fi\n\
             exec ip netns exec {ns} {bin} \"$@\"\n",
            gate = launches.gate.display(),
            refused = launches.refused.display(),
            ns = net.name,
            bin = bin.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

struct Run<'a> {
    colony: &'a Colony,
    pg: &'a PrivatePg,
    garage: &'a crate::garage::Garage,
    cells: &'a CellNet,
    ship: &'a CellNet,
    ports: Ports,
    launches: &'a Launches,
    rng: StdRng,
    started: Instant,
    /// Cells this run SIGKILLed, and when.
    killed: HashMap<uuid::Uuid, DateTime<Utc>>,
    report: Report,
}

/// Run the colony under faults for `config.chaos`, let it settle, and count.
pub async fn run(config: &Config) -> Report {
    let pg = PrivatePg::start().await;
    let storage = PrivateGarage::start().await;
    let garage = &storage.node;
    let mut colony = Colony::new(Rig::garage_with(garage, TestDb::migrated_on(&pg.admin).await).await);
    let source = LiveSource::start().await;
    let ports =
        Ports { postgres: port_of(&colony.rig.db.url), storage: port_of(&garage.endpoint), source: source.addr.port() };
    // The cells in one namespace, both mothership loops in another; every
    // URL names the cells' side of the veth, which both namespaces reach.
    let cells = CellNet::create();
    let ship = CellNet::create();
    for (key, value) in colony.rig.storage_env.iter_mut() {
        if *key == "AWS_ENDPOINT_URL" {
            *value = cells.url(value);
        }
    }
    let launches = Launches {
        gate: colony.logs.path().join("launches-fail"),
        refused: colony.logs.path().join("launches-refused.log"),
    };
    let clip = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();

    let live: Vec<String> = (0..config.live_channels).map(|i| format!("live{i}")).collect();
    for name in &live {
        source.add(name, &clip, config.window);
        source.stamp(name);
        admin(&colony, &["channel", "add", "--login", name, "--source-url", &cells.url(&source.media_url(name))]).await;
    }
    // The backfill's channel is never live: its URL is refused at once (a
    // name to resolve would wait on DNS the namespaces cannot reach, and
    // hold up every tick by the probe timeout).
    admin(&colony, &["channel", "add", "--login", "past", "--source-url", "http://127.0.0.1:9/backfill-only"]).await;
    // Live recordings get thumbnails; backfill is downloads only (CPU is 2 cores).
    sqlx::query("UPDATE channels SET pipeline = CASE WHEN login = 'past' THEN '[]' ELSE '[\"thumbnails\"]' END::jsonb")
        .execute(&colony.rig.pool)
        .await
        .unwrap();
    let mut vods: Vec<String> = Vec::new();
    let mut backfill = |n: usize| {
        let urls: Vec<String> = (vods.len()..vods.len() + n)
            .map(|i| {
                let name = format!("vod{i}");
                // About 15 s each: long enough to be killed, cancelled or cut off midway.
                source.add(&name, &clip, 60);
                source.end(&name);
                source.stamp(&name);
                source.trace(&name);
                source.segment_delay(&name, Duration::from_millis(1000));
                vods.push(name.clone());
                cells.url(&source.media_url(&name))
            })
            .collect();
        urls
    };
    enqueue(&colony, &backfill(config.backfills)).await;

    let wrappers =
        [bin("observer-cell"), bin("harvest-cell")].map(|b| launch_wrapper(colony.logs.path(), &cells, &b, &launches));
    let loops: Vec<Child> =
        ["a", "b"].iter().map(|which| mothership_loop(&colony, &cells, &ship, &wrappers, which)).collect();
    // Faults hit a running colony: first every live channel has stored a
    // segment (a cut before any observer has reached Postgres is a start,
    // not a hand-over, and what leaves the window meanwhile is lost by design).
    let warming = Instant::now();
    loop {
        let recording: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT r.channel_id) FROM recordings r JOIN segments s ON s.recording_id = r.id
              WHERE r.source = 'live' AND NOT s.is_gap",
        )
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap_or(0);
        if recording as usize >= live.len() {
            break;
        }
        assert!(warming.elapsed() < SECS(90), "the colony did not start recording every live channel within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("chaos: every live channel recording after {:.1} s; the faults begin", warming.elapsed().as_secs_f64());
    let mut run = Run {
        colony: &colony,
        pg: &pg,
        garage,
        cells: &cells,
        ship: &ship,
        ports,
        launches: &launches,
        rng: StdRng::seed_from_u64(config.seed),
        started: Instant::now(),
        killed: HashMap::new(),
        report: Report { seed: config.seed, started_at: Some(SystemTime::now()), ..Report::default() },
    };
    let end = run.started + config.chaos;
    // Past the chaos time, only kinds not seen yet are injected, until each
    // has been, for at most OVERTIME.
    let overtime = end + OVERTIME;
    let mut round: Vec<Fault> = Vec::new();
    let mut retried: BTreeSet<Fault> = BTreeSet::new();
    loop {
        let unseen: Vec<Fault> = Fault::ALL.into_iter().filter(|f| !run.report.injected.contains_key(f)).collect();
        let now = Instant::now();
        if now >= end && (unseen.is_empty() || now >= overtime) {
            break;
        }
        if now >= end {
            round.retain(|f| unseen.contains(f));
        }
        if round.is_empty() {
            round = if now >= end { unseen } else { Fault::ALL.to_vec() };
            round.shuffle(&mut run.rng);
            retried.clear();
        }
        // Keep the harvest cells busy: top the backfill up.
        let outstanding: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'vod_download' AND state IN ('available', 'running', 'retryable')",
        )
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap_or(config.backfills as i64);
        enqueue(&colony, &backfill(config.backfills.saturating_sub(outstanding as usize))).await;
        let pause = run.rng.random_range(config.pause.0..=config.pause.1);
        tokio::time::sleep(SECS(pause)).await;
        let fault = round.pop().unwrap();
        // A fault with nothing to hit yet (no job running), or whose effect
        // was not seen, comes again later in the round.
        if !run.inject(fault).await && !retried.contains(&fault) {
            retried.insert(fault);
            round.insert(0, fault);
        }
    }
    run.report.chaos_secs = run.started.elapsed().as_secs();

    // Settle: the streams end, the colony finishes its work and goes idle.
    let settling = Instant::now();
    for name in &live {
        source.end(name);
    }
    let deadline = settling + config.settle;
    loop {
        let busy: Result<(i64, i64), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM recordings WHERE state IN ('recording', 'standby')),
                    (SELECT count(*) FROM jobs WHERE state IN ('available', 'running', 'retryable'))",
        )
        .fetch_one(&colony.rig.pool)
        .await;
        if matches!(busy, Ok((0, 0))) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(SECS(2)).await;
    }
    run.report.settle_secs = settling.elapsed().as_secs();
    for mut child in loops {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        if tokio::time::timeout(SECS(30), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    colony.kill_cells().await;
    let mut report = run.report;
    let killed = run.killed;
    report.launches_refused = launches.refused();
    audit(&colony, garage, &source, &live, &vods, &killed, &mut report).await;
    if report.losses() > 0 || !report.blind_spots().is_empty() {
        // Keep the cells' and motherships' logs for whoever reads the failure.
        let kept = std::env::temp_dir().join(format!("colony-chaos-logs-{}-{}", config.seed, std::process::id()));
        let copied = std::process::Command::new("cp").arg("-a").arg(colony.logs.path()).arg(&kept).status();
        report.kept_logs = copied.is_ok_and(|s| s.success()).then_some(kept);
    }
    report
}

/// Seconds since the faults began, for a time the source or Postgres gave.
fn since(report: &Report, at: SystemTime) -> String {
    let origin = report.started_at.unwrap_or(SystemTime::UNIX_EPOCH);
    match at.duration_since(origin) {
        Ok(d) => format!("t+{}", d.as_secs()),
        Err(e) => format!("t-{}", e.duration().as_secs()),
    }
}

/// A mothership CLI command that must succeed.
async fn admin(colony: &Colony, args: &[&str]) {
    let out = colony.command(args).output().await.unwrap();
    assert!(out.status.success(), "mothership {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn enqueue(colony: &Colony, urls: &[String]) {
    if urls.is_empty() {
        return;
    }
    let file = colony.logs.path().join(format!("backfill-{}.txt", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, urls.join("\n")).unwrap();
    admin(colony, &["backfill", "--channel", "past", "--urls-from", file.to_str().unwrap()]).await;
}

/// `mothership run` with the chaos settings, in the mothership's namespace;
/// its cells start through `wrappers` in the cells' namespace, and its
/// output goes to a file.
fn mothership_loop(colony: &Colony, cells: &CellNet, ship: &CellNet, wrappers: &[PathBuf; 2], which: &str) -> Child {
    let mut cmd = colony.command_at(&ship.wrap(&bin("mothership")), &["run", "--every", "2s", "--json"]);
    for (k, v) in COLONY_ENV {
        cmd.env(k, v);
    }
    cmd.env("DATABASE_URL", cells.url(&colony.rig.db.url))
        .env("COLONY_OBSERVER_DATABASE_URL", cells.url(&colony.rig.db.role_url(Role::Observer)))
        .env("COLONY_HARVEST_DATABASE_URL", cells.url(&colony.rig.db.role_url(Role::Harvest)))
        .env("COLONY_PROCESS_OBSERVER_BIN", &wrappers[0])
        .env("COLONY_PROCESS_HARVEST_BIN", &wrappers[1]);
    let out = std::fs::File::create(colony.logs.path().join(format!("mothership-{which}.out"))).unwrap();
    let err = std::fs::File::create(colony.logs.path().join(format!("mothership-{which}.log"))).unwrap();
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).kill_on_drop(true);
    cmd.spawn().expect("start mothership run")
}

/// Is anything accepting connections on the host's `port`?
async fn accepts(port: u16) -> bool {
    matches!(tokio::time::timeout(SECS(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await, Ok(Ok(_)))
}

/// The processes of a cell binary the kernel lists in the cells' namespace
/// (other tests' cells live elsewhere).
fn cells_in(net: &CellNet, binary: &str) -> Vec<kernel::CellProcess> {
    let inode = net.inode();
    kernel::cell_processes(binary).into_iter().filter(|p| kernel::netns_of(p.pid) == Some(inode)).collect()
}

/// Observer processes in the cells' namespace, by pid.
fn observer_pids(net: &CellNet) -> HashSet<i32> {
    cells_in(net, "observer-cell").into_iter().map(|p| p.pid).collect()
}

impl Run<'_> {
    fn note(&mut self, fault: Fault, detail: String) {
        let at = self.started.elapsed().as_secs();
        let entry = format!("t+{at:>4}s {fault:?}: {detail}");
        eprintln!("chaos: {entry}");
        self.report.timeline.push(entry);
        *self.report.injected.entry(fault).or_default() += 1;
    }

    fn skip(&mut self, fault: Fault, why: &str) {
        let at = self.started.elapsed().as_secs();
        let entry = format!("t+{at:>4}s {fault:?} skipped: {why}");
        eprintln!("chaos: {entry}");
        self.report.timeline.push(entry);
        *self.report.skipped.entry(fault).or_default() += 1;
    }

    /// Note `fault` if its effect was seen, else skip it; returns `seen`.
    fn seen(&mut self, fault: Fault, seen: bool, detail: String) -> bool {
        if seen {
            self.note(fault, detail);
        } else {
            self.skip(fault, &format!("no effect seen ({detail})"));
        }
        seen
    }

    /// Drop packets on these (namespace, port) pairs for `how_long`. Seen
    /// when the kernel dropped packets in every namespace cut.
    async fn cut(&mut self, fault: Fault, cuts: &[(bool, u16)], how_long: Duration) -> bool {
        let nets = |ship: bool| if ship { self.ship } else { self.cells };
        let before = (self.cells.dropped(), self.ship.dropped());
        let observers = observer_pids(self.cells);
        for (ship, port) in cuts {
            nets(*ship).cut(*port);
        }
        tokio::time::sleep(how_long).await;
        let after = (self.cells.dropped(), self.ship.dropped());
        for (ship, port) in cuts {
            nets(*ship).heal(*port);
        }
        let dropped = (after.0 - before.0, after.1 - before.1);
        let replacements = observer_pids(self.cells).difference(&observers).count();
        let seen = cuts.iter().all(|(ship, _)| if *ship { dropped.1 > 0 } else { dropped.0 > 0 });
        let detail = format!(
            "{} s; the kernel dropped {} packet(s) from the cells, {} from the mothership; {replacements} new observer process(es)",
            how_long.as_secs(),
            dropped.0,
            dropped.1
        );
        self.seen(fault, seen, detail)
    }

    /// Inject `fault`; false if there was nothing to hit or no effect was seen.
    async fn inject(&mut self, fault: Fault) -> bool {
        let Ports { postgres, storage, source } = self.ports;
        match fault {
            Fault::CutCellsPostgres => self.cut(fault, &[(false, postgres)], CUT).await,
            Fault::CutCellsStorage => self.cut(fault, &[(false, storage)], CUT).await,
            Fault::CutCellsSource => self.cut(fault, &[(false, source)], CUT_SOURCE).await,
            Fault::CutMothershipPostgres => self.cut(fault, &[(true, postgres)], CUT).await,
            Fault::CutEverything => {
                self.cut(fault, &[(false, postgres), (false, storage), (false, source), (true, postgres)], CUT).await
            }
            Fault::StopStorage => {
                let g = self.garage.clone();
                let g = tokio::task::spawn_blocking(move || {
                    g.stop();
                    g
                })
                .await
                .unwrap();
                let refused = !accepts(storage).await;
                tokio::time::sleep(STOP).await;
                tokio::task::spawn_blocking(move || g.restart()).await.unwrap();
                self.seen(fault, refused, format!("stopped for {} s; its S3 port refused connections", STOP.as_secs()))
            }
            Fault::StopPostgres => {
                self.pg.stop().await;
                let refused = !accepts(postgres).await;
                tokio::time::sleep(STOP).await;
                self.pg.restart().await;
                self.seen(fault, refused, format!("stopped for {} s; its port refused connections", STOP.as_secs()))
            }
            Fault::KillObserver | Fault::KillHarvest => {
                let kind = if fault == Fault::KillObserver { "observer" } else { "harvest" };
                let Some((cell, pid, busy)) = self.pick_cell(kind).await else {
                    self.skip(fault, &format!("no {kind} cell running"));
                    return false;
                };
                let gone = self.kill(cell, pid).await;
                let busy = if busy { ", running a job" } else { "" };
                self.seen(fault, gone, format!("cell {cell} (pid {pid}){busy}; the kernel lists it gone"))
            }
            Fault::FreezeObserver => {
                let Some((cell, pid, _)) = self.pick_cell("observer").await else {
                    self.skip(fault, "no observer running");
                    return false;
                };
                let before = observer_pids(self.cells);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
                let froze = Instant::now();
                let mut stopped = false;
                let mut replaced_after = None;
                while froze.elapsed() < FREEZE {
                    tokio::time::sleep(SECS(1)).await;
                    stopped |= kernel::state(pid.as_raw()) == Some('T');
                    if replaced_after.is_none() && observer_pids(self.cells).difference(&before).next().is_some() {
                        replaced_after = Some(froze.elapsed().as_secs());
                    }
                }
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                let replaced =
                    replaced_after.map_or("no replacement".to_owned(), |s| format!("a replacement ran after {s} s"));
                self.seen(
                    fault,
                    stopped && replaced_after.is_some(),
                    format!("cell {cell} (pid {pid}) stopped {} s; {replaced}", FREEZE.as_secs()),
                )
            }
            Fault::CancelRetry => {
                let running: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' ORDER BY id")
                    .fetch_all(&self.colony.rig.pool)
                    .await
                    .unwrap_or_default();
                let Some(&job) = running.choose(&mut self.rng) else {
                    self.skip(fault, "no job running");
                    return false;
                };
                let id = job.to_string();
                let cancel = self.colony.run(&["job", "cancel", &id]).await;
                let retry = self.colony.run(&["job", "retry", &id]).await;
                let said = |o: &std::process::Output| {
                    let out = if o.status.success() { &o.stdout } else { &o.stderr };
                    format!("{} ({})", String::from_utf8_lossy(out).trim(), o.status)
                };
                let detail = format!("job {job}: {} / {}", said(&cancel), said(&retry));
                self.seen(fault, cancel.status.success() && retry.status.success(), detail)
            }
            Fault::FailLaunches => {
                let before = self.launches.refused();
                std::fs::write(&self.launches.gate, b"").unwrap();
                // A launch must be wanted: kill a harvest cell, whose work waits.
                let killed = match self.pick_cell("harvest").await {
                    Some((cell, pid, _)) => {
                        self.kill(cell, pid).await;
                        format!("killed harvest cell {cell}")
                    }
                    None => "no harvest cell to kill".to_owned(),
                };
                // At least FAIL_LAUNCHES, and until a launch was refused
                // (a mothership still recovering from the last fault may
                // take a while to want one), at most FAIL_LAUNCHES_MAX.
                let failing = Instant::now();
                tokio::time::sleep(FAIL_LAUNCHES).await;
                while self.launches.refused() == before && failing.elapsed() < FAIL_LAUNCHES_MAX {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                std::fs::remove_file(&self.launches.gate).unwrap();
                let refused = self.launches.refused() - before;
                self.seen(
                    fault,
                    refused > 0,
                    format!(
                        "{:.0} s; {killed}; the wrapper refused {refused} launch(es)",
                        failing.elapsed().as_secs_f64()
                    ),
                )
            }
        }
    }

    /// SIGKILL a cell; true once the kernel lists the process gone.
    async fn kill(&mut self, cell: uuid::Uuid, pid: nix::unistd::Pid) -> bool {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        self.killed.insert(cell, Utc::now());
        for _ in 0..50 {
            if kernel::dead(pid.as_raw()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A running cell of `kind` this colony started, at random (a harvest
    /// cell running a job if there is one). The kernel's process list is
    /// the truth: a cell counts only if a live process carries its id.
    async fn pick_cell(&mut self, kind: &str) -> Option<(uuid::Uuid, nix::unistd::Pid, bool)> {
        let busy: HashSet<uuid::Uuid> =
            sqlx::query_scalar::<_, Option<String>>("SELECT attempted_by FROM jobs WHERE state = 'running'")
                .fetch_all(&self.colony.rig.pool)
                .await
                .unwrap_or_default()
                .iter()
                .flatten()
                .filter_map(|c| c.parse().ok())
                .collect();
        let alive: Vec<(uuid::Uuid, nix::unistd::Pid, bool)> = cells_in(self.cells, &format!("{kind}-cell"))
            .into_iter()
            .filter_map(|p| Some((p.cell?, nix::unistd::Pid::from_raw(p.pid), busy.contains(&p.cell?))))
            .collect();
        let working: Vec<_> = alive.iter().filter(|c| c.2).cloned().collect();
        let pool = if working.is_empty() { alive } else { working };
        pool.choose(&mut self.rng).cloned()
    }
}

/// Read one object through the S3 API: the test's own client, not the
/// colony's storage code.
async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| format!("GET {key}: {e:?}"))?;
    let body = out.body.collect().await.map_err(|e| format!("reading {key}: {e}"))?;
    Ok(body.into_bytes().to_vec())
}

/// Every key under `prefix`, through the S3 API. A listing that fails fails
/// the run: an error is not "no objects".
async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| panic!("cannot list s3://{bucket}/{prefix}: {e:?}"));
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    keys
}

/// Compare a stored object with what the source served, byte for byte.
pub async fn verify(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, served: Option<Vec<u8>>) -> Result<(), String> {
    let got = read_object(s3, bucket, key).await?;
    let Some(served) = served else { return Err("the source never served this sequence".into()) };
    if got == served {
        Ok(())
    } else {
        Err(format!("{} byte(s) stored, {} served, not the same bytes", got.len(), served.len()))
    }
}

/// Count what the colony kept, lost and doubled, from evidence the colony
/// did not write: the source's own record of what it published and served,
/// the objects read back through the S3 API, the origin's request log and
/// the kernel's view of processes.
async fn audit(
    colony: &Colony,
    garage: &crate::garage::Garage,
    source: &LiveSource,
    live: &[String],
    vods: &[String],
    killed: &HashMap<uuid::Uuid, DateTime<Utc>>,
    report: &mut Report,
) {
    let pool = &colony.rig.pool;
    let s3 = garage.client();
    let bucket = garage.bucket.as_str();
    let root = colony.rig.bucket_prefix.as_str();
    for name in live {
        let published: BTreeSet<u64> = source.published(name).iter().map(|p| p.0).collect();
        type Row = (i64, bool, i32, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT s.media_sequence, s.is_gap, s.gap_count, s.gap_reason, s.object_key, s.warning
               FROM segments s JOIN recordings r ON r.id = s.recording_id JOIN channels c ON c.id = r.channel_id
              WHERE c.login = $1 AND r.source = 'live' ORDER BY s.recording_id, s.epoch, s.media_sequence",
        )
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        let mut gaps: BTreeSet<u64> = BTreeSet::new();
        let mut verified: BTreeSet<u64> = BTreeSet::new();
        let mut ledgered: BTreeSet<String> = BTreeSet::new();
        for (seq, is_gap, count, reason, key, warning) in &rows {
            let seq = *seq as u64;
            if *is_gap {
                let count = (*count).max(1) as u64;
                report.gap_segments += count;
                gaps.extend(seq..seq + count);
                let reason: String = reason.clone().unwrap_or_default().chars().take(80).collect();
                *report.gap_reasons.entry(reason).or_default() += count;
                continue;
            }
            *held.entry(seq).or_default() += 1;
            if warning.as_deref().is_some_and(|w| w.starts_with("adopted")) {
                report.adopted += 1;
            }
            let Some(key) = key else {
                report.damaged += 1;
                report.damaged_list.push(format!("{name} #{seq}: a stored row without an object"));
                continue;
            };
            let full = format!("{root}/{key}");
            ledgered.insert(full.clone());
            report.hashed += 1;
            match verify(&s3, bucket, &full, source.segment_bytes(name, seq)).await {
                Ok(()) => {
                    verified.insert(seq);
                }
                Err(why) => {
                    report.damaged += 1;
                    report.damaged_list.push(format!("{name} #{seq}: {why}"));
                }
            }
        }
        report.published += published.len() as u64;
        report.stored += verified.len() as u64;
        let missing: Vec<u64> =
            published.iter().copied().filter(|s| !held.contains_key(s) && !gaps.contains(s)).collect();
        report.missing += missing.len() as u64;
        let when: BTreeMap<u64, SystemTime> = source.published(name).into_iter().collect();
        for run in runs(&missing) {
            let (a, b) = (*run.start(), *run.end());
            report.missing_list.push(format!(
                "{name} {a}..={b} (published {}..{})",
                since(report, when[&a]),
                since(report, when[&b])
            ));
        }
        type Recording = (i64, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<i64>, Option<i64>, i64);
        let recs: Vec<Recording> = sqlx::query_as(
            "SELECT r.id, r.state::text, r.started_at, r.ended_at,
                        min(s.media_sequence), max(s.media_sequence), count(s.media_sequence)
                   FROM recordings r JOIN channels c ON c.id = r.channel_id
                   LEFT JOIN segments s ON s.recording_id = r.id
                  WHERE c.login = $1 AND r.source = 'live'
                  GROUP BY r.id ORDER BY r.id",
        )
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap();
        for (id, state, began, ended, first, last, rows) in recs {
            report.recordings.push(format!(
                "{name} recording {id} {state}: {rows} row(s), sequences {first:?}..={last:?}, {}..{}",
                since(report, began.into()),
                ended.map_or("open".to_owned(), |e| since(report, e.into()))
            ));
        }
        report.duplicates += held.values().map(|n| n - 1).sum::<u64>();
        let prefixes: Vec<String> = sqlx::query_scalar(
            "SELECT r.storage_prefix FROM recordings r JOIN channels c ON c.id = r.channel_id
              WHERE c.login = $1 AND r.source = 'live'",
        )
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap();
        for prefix in prefixes {
            for key in list_keys(&s3, bucket, &format!("{root}/{}/", prefix.trim_end_matches('/'))).await {
                let segment = key.rsplit('/').next().is_some_and(|f| f.ends_with(".ts") && f.len() == 11);
                if segment && !ledgered.contains(&key) {
                    report.unledgered += 1;
                }
            }
        }
    }

    type JobRow = (i64, String, String, Option<String>, Option<String>);
    let jobs: Vec<JobRow> =
        sqlx::query_as("SELECT id, kind, state::text, last_error, args->>'url' FROM jobs ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    report.jobs = jobs.len() as u64;
    for (id, kind, state, error, url) in &jobs {
        if state != "succeeded" {
            report.jobs_lost.push(format!("job {id} ({kind}) {state}: {}", error.clone().unwrap_or_default()));
            continue;
        }
        report.jobs_succeeded += 1;
        if kind != "vod_download" {
            continue;
        }
        report.vods_succeeded += 1;
        let url = url.clone().unwrap_or_default();
        match verify_vod(pool, &s3, bucket, root, source, &url).await {
            Ok(()) => report.vods_verified += 1,
            Err(why) => report.vods_unverified.push(format!("job {id} ({url}): {why}")),
        }
    }
    for vod in vods {
        let requests = source.requests(vod);
        report.traced_requests += requests.len() as u64;
        report.unattributed_requests += requests.iter().filter(|r| r.pid.is_none()).count() as u64;
        let runs = traced_executions(&requests);
        report.traced_executions += runs.len() as u64;
        report.reruns += runs.len().saturating_sub(1) as u64;
        report.overlapping_runs.extend(overlaps(&runs).into_iter().map(|o| format!("{vod} (origin): {o}")));
    }
    report.recordings_open =
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM recordings WHERE state IN ('recording', 'standby')")
            .fetch_one(pool)
            .await
            .unwrap() as u64;
    let ends: Vec<(String, String, Option<i32>, i64)> = sqlx::query_as(
        "SELECT kind::text, state::text, exit_code, count(*) FROM cells GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (kind, state, code, n) in ends {
        match kind.as_str() {
            "observer" => report.observers_started += n as u64,
            "harvest" => report.harvest_started += n as u64,
            _ => {}
        }
        let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
        report.cell_ends.insert(format!("{kind} {state}{code}"), n as u64);
    }
    executions(colony.logs.path(), killed, report);
}

/// Consecutive runs of sorted numbers.
fn runs(sorted: &[u64]) -> Vec<std::ops::RangeInclusive<u64>> {
    let mut out: Vec<std::ops::RangeInclusive<u64>> = Vec::new();
    for &n in sorted {
        match out.last_mut() {
            Some(r) if *r.end() + 1 == n => *r = *r.start()..=n,
            _ => out.push(n..=n),
        }
    }
    out
}

/// A VOD download is done when storage holds every segment the origin has,
/// byte for byte.
async fn verify_vod(
    pool: &sqlx::PgPool,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    root: &str,
    source: &LiveSource,
    url: &str,
) -> Result<(), String> {
    let name = url::Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments()?.next().map(str::to_owned))
        .ok_or("the job names no VOD of the origin")?;
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT s.media_sequence, s.object_key FROM segments s JOIN recordings r ON r.id = s.recording_id
          WHERE r.source = 'vod' AND r.source_url = $1 AND NOT s.is_gap",
    )
    .bind(url)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let keys: BTreeMap<u64, Option<String>> = rows.into_iter().map(|(s, k)| (s as u64, k)).collect();
    let published = source.published(&name);
    for (seq, _) in &published {
        let key = keys.get(seq).cloned().flatten().ok_or_else(|| format!("segment {seq} is not stored"))?;
        verify(s3, bucket, &format!("{root}/{key}"), source.segment_bytes(&name, *seq))
            .await
            .map_err(|why| format!("segment {seq}: {why}"))?;
    }
    if published.is_empty() {
        return Err("the origin published nothing".into());
    }
    Ok(())
}

/// One execution of a download as the origin saw it: a process that asked
/// for the VOD's playlist and then its segments.
#[derive(Debug, Clone, PartialEq)]
struct TracedRun {
    pid: i32,
    first: SystemTime,
    last: SystemTime,
}

/// Executions from the origin's request log: each process's requests in
/// order, a new execution at every playlist request that follows segment
/// requests (a retried or taken-over job starts by loading the playlist).
fn traced_executions(requests: &[Request]) -> Vec<TracedRun> {
    let mut by_pid: BTreeMap<i32, Vec<&Request>> = BTreeMap::new();
    for r in requests {
        if let Some(pid) = r.pid {
            by_pid.entry(pid).or_default().push(r);
        }
    }
    let mut runs = Vec::new();
    for (pid, mut list) in by_pid {
        list.sort_by_key(|r| r.began);
        let mut current: Option<(TracedRun, bool)> = None;
        for r in list {
            let playlist = r.seq.is_none();
            match current.as_mut() {
                Some((run, saw_segment)) if !(playlist && *saw_segment) => {
                    run.last = r.began;
                    *saw_segment |= !playlist;
                }
                _ => {
                    if let Some((run, _)) = current.take() {
                        runs.push(run);
                    }
                    current = Some((TracedRun { pid, first: r.began, last: r.began }, !playlist));
                }
            }
        }
        runs.extend(current.map(|c| c.0));
    }
    runs.sort_by_key(|r| r.first);
    runs
}

/// Executions of one download that asked the origin at the same time: one
/// began while another had yet to make its last request.
fn overlaps(runs: &[TracedRun]) -> Vec<String> {
    let at = |t: SystemTime| DateTime::<Utc>::from(t).format("%H:%M:%S%.3f").to_string();
    let mut out = Vec::new();
    for (i, later) in runs.iter().enumerate() {
        for earlier in &runs[..i] {
            if later.first < earlier.last {
                out.push(format!(
                    "pid {} asked {}..{}, pid {} began {}",
                    earlier.pid,
                    at(earlier.first),
                    at(earlier.last),
                    later.pid,
                    at(later.first)
                ));
            }
        }
    }
    out
}

/// One execution of a job by one cell, from that cell's JSON log.
#[derive(Debug)]
struct Execution {
    cell: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    succeeded: bool,
}

/// How a harvest cell's log says an execution of a job is over.
const RUN_ENDS: &[&str] = &[
    "job succeeded",
    "job failed",
    "the job's lease was lost",
    "the job finished, but it was cancelled or taken over",
    "shutdown deadline passed; handing the job back",
];

/// The cells' own account, a second opinion beside the origin's trace:
/// `job started` and `job succeeded` (written only once the success is
/// recorded) in the cells' JSON logs. A job succeeded twice, or two
/// executions of one job that ran at the same time, is a job executed twice.
/// These lines are the code under test's own words: the audit holds their
/// count to the number of successes, so a changed log shape cannot make
/// them read 0 and pass.
fn executions(logs: &Path, killed: &HashMap<uuid::Uuid, DateTime<Utc>>, report: &mut Report) {
    let mut runs: BTreeMap<i64, Vec<Execution>> = BTreeMap::new();
    for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(cell) = name.strip_prefix("harvest-").and_then(|n| n.strip_suffix(".log")) else { continue };
        let killed_at = cell.parse::<uuid::Uuid>().ok().and_then(|c| killed.get(&c)).copied();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut current: HashMap<i64, usize> = HashMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(job) = v["span"]["id"].as_i64().filter(|_| v["span"]["name"] == "job") else { continue };
            let Some(at) = v["timestamp"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()) else { continue };
            let message = v["fields"]["message"].as_str().unwrap_or_default();
            let list = runs.entry(job).or_default();
            if message == "job started" {
                list.push(Execution { cell: cell.to_owned(), start: at, end: at, succeeded: false });
                current.insert(job, list.len() - 1);
                continue;
            }
            let Some(&i) = current.get(&job) else { continue };
            list[i].end = at;
            if message == "job succeeded" {
                list[i].succeeded = true;
            }
            // The worker logs these once the job's future is dropped or
            // done: that execution is over, whatever happens to the cell later.
            if RUN_ENDS.iter().any(|end| message.starts_with(end)) {
                current.remove(&job);
            }
        }
        // An execution cut short by SIGKILL ran until the kill.
        if let Some(at) = killed_at {
            for (job, i) in current {
                if let Some(run) = runs.get_mut(&job).and_then(|l| l.get_mut(i)) {
                    run.end = run.end.max(at);
                }
            }
        }
    }
    for (job, mut list) in runs {
        list.sort_by_key(|r| r.start);
        report.log_executions += list.len() as u64;
        if list.iter().filter(|r| r.succeeded).count() > 1 {
            report.jobs_done_twice += 1;
        }
        for pair in list.windows(2) {
            if pair[1].start < pair[0].end {
                report.overlapping_runs.push(format!(
                    "job {job} (logs): cell {} ran {}..{}, cell {} started {}",
                    &pair[0].cell[..8],
                    pair[0].start.format("%H:%M:%S%.3f"),
                    pair[0].end.format("%H:%M:%S%.3f"),
                    &pair[1].cell[..8],
                    pair[1].start.format("%H:%M:%S%.3f")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str, job: i64, message: &str) -> String {
        serde_json::json!({
            "timestamp": at, "level": "INFO", "fields": { "message": message },
            "span": { "name": "job", "id": job, "kind": "vod_download", "attempt": 1 }
        })
        .to_string()
    }

    fn request(pid: Option<i32>, seq: Option<u64>, at_secs: u64) -> Request {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + at_secs);
        Request { seq, peer: "127.0.0.1:1".parse().unwrap(), pid, began: at, ended: at, status: 200 }
    }

    /// The origin's trace: a new execution at a playlist after segments,
    /// an overlap when a second process asks while the first still does,
    /// none when one takes over after the other stopped, and requests no
    /// process owned are left out.
    #[test]
    fn the_origin_trace_splits_executions_and_finds_overlaps() {
        let trace = [
            request(Some(10), None, 0),
            request(Some(10), Some(0), 1),
            request(Some(10), Some(1), 2),
            // pid 10 starts the job again (a retry): a second execution.
            request(Some(10), None, 3),
            request(Some(10), Some(2), 4),
            // pid 20 begins while pid 10 still asks at 6: an overlap.
            request(Some(20), None, 5),
            request(Some(10), Some(3), 6),
            request(Some(20), Some(3), 7),
            request(None, Some(4), 8),
        ];
        let runs = traced_executions(&trace);
        assert_eq!(runs.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![10, 10, 20]);
        let found = overlaps(&runs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("pid 10 asked"), "{found:?}");

        // A take-over after the first process's last request is no overlap.
        let trace = [
            request(Some(10), None, 0),
            request(Some(10), Some(0), 1),
            request(Some(20), None, 2),
            request(Some(20), Some(0), 3),
        ];
        let runs = traced_executions(&trace);
        assert_eq!(runs.len(), 2);
        assert!(overlaps(&runs).is_empty());
    }

    /// The audit itself must catch what it claims to count.
    #[test]
    fn the_audit_counts_overlapping_runs_double_successes_and_runs_cut_by_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let write = |cell: uuid::Uuid, lines: &[String]| {
            std::fs::write(dir.path().join(format!("harvest-{cell}.log")), lines.join("\n")).unwrap()
        };
        // Job 1: a runs 10..20 and succeeds; b runs 15..25 and succeeds too.
        // Job 2: c is killed at 40 after its last line at 31; a starts it at 35.
        write(
            a,
            &[
                line("2026-01-01T00:00:10Z", 1, "job started"),
                line("2026-01-01T00:00:20Z", 1, "job succeeded"),
                line("2026-01-01T00:00:35Z", 2, "job started"),
                line("2026-01-01T00:00:50Z", 2, "job succeeded"),
            ],
        );
        write(b, &[line("2026-01-01T00:00:15Z", 1, "job started"), line("2026-01-01T00:00:25Z", 1, "job succeeded")]);
        write(c, &[line("2026-01-01T00:00:30Z", 2, "job started"), line("2026-01-01T00:00:31Z", 2, "progress")]);
        let killed = HashMap::from([(c, "2026-01-01T00:00:40Z".parse().unwrap())]);
        let mut report = Report::default();
        executions(dir.path(), &killed, &mut report);
        assert_eq!(report.jobs_done_twice, 1);
        assert_eq!(report.overlapping_runs.len(), 2, "{:?}", report.overlapping_runs);
        assert_eq!(report.log_executions, 4);

        // Sequential runs are no overlap.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::write(
            dir2.path().join(format!("harvest-{a}.log")),
            [line("2026-01-01T00:00:10Z", 3, "job started"), line("2026-01-01T00:00:12Z", 3, "lost")].join("\n"),
        )
        .unwrap();
        std::fs::write(
            dir2.path().join(format!("harvest-{b}.log")),
            [line("2026-01-01T00:00:13Z", 3, "job started"), line("2026-01-01T00:00:14Z", 3, "job succeeded")]
                .join("\n"),
        )
        .unwrap();
        // c stopped job 4 (cancelled) at 12 and was killed at 30; another cell took it over at 13.
        std::fs::write(
            dir2.path().join(format!("harvest-{c}.log")),
            [
                line("2026-01-01T00:00:10Z", 4, "job started"),
                line("2026-01-01T00:00:12Z", 4, "the job's lease was lost; stopped it without reporting anything"),
            ]
            .join("\n"),
        )
        .unwrap();
        std::fs::write(
            dir2.path().join(format!("harvest-{}.log", uuid::Uuid::new_v4())),
            [line("2026-01-01T00:00:13Z", 4, "job started"), line("2026-01-01T00:00:20Z", 4, "job succeeded")]
                .join("\n"),
        )
        .unwrap();
        let killed = HashMap::from([(c, "2026-01-01T00:00:30Z".parse().unwrap())]);
        let mut report = Report::default();
        executions(dir2.path(), &killed, &mut report);
        assert_eq!(
            (report.jobs_done_twice, report.overlapping_runs.len(), report.log_executions),
            (0, 0, 4),
            "{:?}",
            report.overlapping_runs
        );
    }
}
