//! The chaos suite's engine: a whole colony under faults, then an audit of
//! what it kept.
//!
//! The colony is real: two `mothership run` loops at once on the process
//! launcher, observer and harvest cells, a private PostgreSQL cluster (so it
//! can be stopped), a private Garage node (stopped and started again), the
//! live test source with live channels and finished VODs for backfill. The
//! cells reach Postgres through a [`Blackhole`] proxy, so a partition leaves
//! their connections half-open instead of refusing them.
//!
//! Faults come in a seeded random order, each kind once per round, with
//! seeded pauses between them, until the chaos time is up:
//! a partition between the cells and Postgres longer than the heartbeat
//! timeout, Garage stopped for 30 s, SIGKILL of an observer and of a harvest
//! cell (preferably one running a job), SIGSTOP of an observer past its
//! replacement then SIGCONT, `job cancel` then `job retry` on a running job,
//! and Postgres stopped for 30 s. Then the live channels end, the colony
//! settles, and [`Report`] counts what was lost.
//!
//! Every wait is bounded: a run stops by itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio::process::Child;

use crate::live::{Container, LiveSource, Profile, media};
use crate::mothership::Colony;
use crate::observer::Rig;
use crate::pg::Role;
use crate::pg::TestDb;
use crate::proxy::Blackhole;

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
        Self { seed, chaos: SECS(150), live_channels: 3, backfills: 5, window: 15, pause: (3, 8), settle: SECS(240) }
    }

    /// A soak of `minutes`.
    pub fn soak(seed: u64, minutes: u64) -> Self {
        Self { chaos: SECS(minutes * 60), pause: (5, 20), ..Self::short(seed) }
    }
}

/// A fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    PartitionCells,
    StopStorage,
    KillObserver,
    KillHarvest,
    FreezeObserver,
    CancelRetry,
    StopPostgres,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::PartitionCells,
        Fault::StopStorage,
        Fault::KillObserver,
        Fault::KillHarvest,
        Fault::FreezeObserver,
        Fault::CancelRetry,
        Fault::StopPostgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::PartitionCells => "Postgres blackholed for the cells, 12 s (heartbeat timeout 8 s)",
            Fault::StopStorage => "Garage stopped, 30 s",
            Fault::KillObserver => "SIGKILL of an observer",
            Fault::KillHarvest => "SIGKILL of a harvest cell",
            Fault::FreezeObserver => "SIGSTOP of an observer past its replacement, then SIGCONT",
            Fault::CancelRetry => "`job cancel` then `job retry` on a running job",
            Fault::StopPostgres => "Postgres stopped, 30 s",
        }
    }
}

/// What a run injected and what the colony kept.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub seed: u64,
    pub chaos_secs: u64,
    pub settle_secs: u64,
    /// Each kind of fault (and the two mothership loops) with how often it hit.
    pub injected: BTreeMap<Fault, u32>,
    /// Faults with nothing to hit at that moment (no running job, say).
    pub skipped: BTreeMap<Fault, u32>,
    pub timeline: Vec<String>,
    /// Live segments the source published, and how many the ledger holds.
    pub published: u64,
    pub stored: u64,
    /// Published but in no ledger row.
    pub missing: u64,
    /// Source segments held by more than one ledger row.
    pub duplicates: u64,
    /// Segments the ledger records as gaps, and why.
    pub gap_segments: u64,
    pub gap_reasons: BTreeMap<String, u64>,
    /// Rows adopted from storage after their writer was fenced or killed.
    pub adopted: u64,
    /// Ledger rows whose object is missing or not the size recorded.
    pub damaged: u64,
    /// Segment objects in storage that no ledger row names.
    pub unledgered: u64,
    pub jobs: u64,
    pub jobs_succeeded: u64,
    /// Jobs not done at the end: dead, or never finished.
    pub jobs_lost: Vec<String>,
    /// Jobs whose success was recorded by more than one execution.
    pub jobs_done_twice: u64,
    /// Two executions of one job running at the same time.
    pub overlapping_runs: Vec<String>,
    /// Executions beyond the first (after a kill, a lost lease, a retry).
    pub reruns: u64,
    pub recordings_open: u64,
    pub observers_started: u64,
    pub harvest_started: u64,
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
            + self.jobs_done_twice
            + self.overlapping_runs.len() as u64
            + self.recordings_open
    }

    /// The figures, for people and for docs/RELIABILITY.md.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self.injected.iter().map(|(f, n)| format!("  {n:>3} x {}", f.name())).collect();
        let skipped: Vec<String> = self.skipped.iter().map(|(f, n)| format!("{n} x {f:?}")).collect();
        format!(
            "chaos run, seed {seed}: {chaos} s of faults, settled in {settle} s\n\
             faults injected (plus two `mothership run` loops throughout):\n{faults}\n\
             skipped (nothing to hit): {skipped}\n\
             cells started: {obs} observers, {harv} harvest\n\
             | published | stored | missing | duplicates | gap segments | damaged | unledgered | adopted | jobs | done | lost | done twice | overlapping runs | reruns | recordings left open |\n\
             | {published} | {stored} | {missing} | {duplicates} | {gaps} | {damaged} | {unledgered} | {adopted} | {jobs} | {done} | {lost} | {twice} | {overlap} | {reruns} | {open} |\n\
             cells ended: {ends:?}\n\
             gap reasons: {reasons:?}\n\
             jobs lost: {lost_list:?}\n\
             overlapping runs: {overlap_list:?}",
            seed = self.seed,
            chaos = self.chaos_secs,
            settle = self.settle_secs,
            faults = faults.join("\n"),
            skipped = if skipped.is_empty() { "none".into() } else { skipped.join(", ") },
            obs = self.observers_started,
            harv = self.harvest_started,
            published = self.published,
            stored = self.stored,
            missing = self.missing,
            duplicates = self.duplicates,
            gaps = self.gap_segments,
            damaged = self.damaged,
            unledgered = self.unledgered,
            adopted = self.adopted,
            jobs = self.jobs,
            done = self.jobs_succeeded,
            lost = self.jobs_lost.len(),
            twice = self.jobs_done_twice,
            overlap = self.overlapping_runs.len(),
            reruns = self.reruns,
            open = self.recordings_open,
            reasons = self.gap_reasons,
            ends = self.cell_ends,
            lost_list = self.jobs_lost,
            overlap_list = self.overlapping_runs,
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
    ("OBSERVER_STANDBY", "5s"),
    ("OBSERVER_OFFLINE_AFTER", "5s"),
    ("OBSERVER_FINALIZE_DEADLINE", "120s"),
    ("OBSERVER_SHUTDOWN_DEADLINE", "15s"),
    ("OBSERVER_WRITE_LEASE", "4s"),
];

struct Run<'a> {
    colony: &'a Colony,
    pg: &'a PrivatePg,
    garage: &'a crate::garage::Garage,
    cells_pg: &'a Blackhole,
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
    let colony = Colony::new(Rig::garage_with(garage, TestDb::migrated_on(&pg.admin).await).await);
    // The cells connect through the cut-able proxy, each as its own role.
    let (cells_pg, cells_url) = Blackhole::in_front_of(&colony.rig.db.role_url(Role::Observer)).await;
    let source = LiveSource::start().await;
    let clip = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();

    let live: Vec<String> = (0..config.live_channels).map(|i| format!("live{i}")).collect();
    for name in &live {
        source.add(name, &clip, config.window);
        admin(&colony, &["channel", "add", "--login", name, "--source-url", &source.media_url(name)]).await;
    }
    admin(&colony, &["channel", "add", "--login", "past", "--source-url", "http://backfill.invalid/"]).await;
    // Live recordings get thumbnails; backfill is downloads only (CPU is 2 cores).
    sqlx::query("UPDATE channels SET pipeline = CASE WHEN login = 'past' THEN '[]' ELSE '[\"thumbnails\"]' END::jsonb")
        .execute(&colony.rig.pool)
        .await
        .unwrap();
    let mut vods = 0;
    let mut backfill = |n: usize| {
        let urls: Vec<String> = (vods..vods + n)
            .map(|i| {
                let name = format!("vod{i}");
                // About 15 s each: long enough to be killed, cancelled or cut off midway.
                source.add(&name, &clip, 60);
                source.end(&name);
                source.segment_delay(&name, Duration::from_millis(1000));
                source.media_url(&name)
            })
            .collect();
        vods += n;
        urls
    };
    enqueue(&colony, &backfill(config.backfills)).await;

    let loops: Vec<Child> = ["a", "b"].iter().map(|which| mothership_loop(&colony, &cells_url, which)).collect();
    let mut run = Run {
        colony: &colony,
        pg: &pg,
        garage,
        cells_pg: &cells_pg,
        rng: StdRng::seed_from_u64(config.seed),
        started: Instant::now(),
        killed: HashMap::new(),
        report: Report { seed: config.seed, ..Report::default() },
    };
    let end = run.started + config.chaos;
    let mut round: Vec<Fault> = Vec::new();
    let mut retried: BTreeSet<Fault> = BTreeSet::new();
    while Instant::now() < end {
        if round.is_empty() {
            round = Fault::ALL.to_vec();
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
        if Instant::now() >= end {
            break;
        }
        let fault = round.pop().unwrap();
        // A fault with nothing to hit yet (no job running) comes again later in the round.
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
    audit(&colony, &source, &live, &killed, &mut report).await;
    report
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

/// `mothership run` with the chaos settings; its output goes to a file.
fn mothership_loop(colony: &Colony, cells_url: &str, which: &str) -> Child {
    let mut cmd = colony.command(&["run", "--every", "2s", "--json"]);
    for (k, v) in COLONY_ENV {
        cmd.env(k, v);
    }
    let mut harvest = url::Url::parse(cells_url).unwrap();
    harvest.set_username(crate::pg::test_login(Role::Harvest)).unwrap();
    cmd.env("COLONY_OBSERVER_DATABASE_URL", cells_url).env("COLONY_HARVEST_DATABASE_URL", harvest.as_str());
    let out = std::fs::File::create(colony.logs.path().join(format!("mothership-{which}.out"))).unwrap();
    let err = std::fs::File::create(colony.logs.path().join(format!("mothership-{which}.log"))).unwrap();
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).kill_on_drop(true);
    cmd.spawn().expect("start mothership run")
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

    /// Inject `fault`; false if there was nothing to hit.
    async fn inject(&mut self, fault: Fault) -> bool {
        match fault {
            Fault::PartitionCells => {
                self.cells_pg.cut();
                tokio::time::sleep(SECS(12)).await;
                self.cells_pg.heal();
                self.note(fault, "cut for 12 s, then healed".into());
            }
            Fault::StopStorage => {
                let g = self.garage.clone();
                let g = tokio::task::spawn_blocking(move || {
                    g.stop();
                    g
                })
                .await
                .unwrap();
                tokio::time::sleep(SECS(30)).await;
                tokio::task::spawn_blocking(move || g.restart()).await.unwrap();
                self.note(fault, "stopped for 30 s".into());
            }
            Fault::KillObserver | Fault::KillHarvest => {
                let kind = if fault == Fault::KillObserver { "observer" } else { "harvest" };
                match self.pick_cell(kind).await {
                    Some((cell, pid, busy)) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        self.killed.insert(cell, Utc::now());
                        self.note(
                            fault,
                            format!("cell {cell} (pid {pid}){}", if busy { ", running a job" } else { "" }),
                        );
                    }
                    None => {
                        self.skip(fault, &format!("no {kind} cell running"));
                        return false;
                    }
                }
            }
            Fault::FreezeObserver => match self.pick_cell("observer").await {
                Some((cell, pid, _)) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
                    tokio::time::sleep(SECS(14)).await;
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                    self.note(fault, format!("cell {cell} (pid {pid}) stopped 14 s"));
                }
                None => {
                    self.skip(fault, "no observer running");
                    return false;
                }
            },
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
                self.note(
                    fault,
                    format!(
                        "job {job}: {} / {}",
                        String::from_utf8_lossy(&cancel.stdout).trim(),
                        String::from_utf8_lossy(&retry.stdout).trim()
                    ),
                );
            }
            Fault::StopPostgres => {
                self.pg.stop().await;
                tokio::time::sleep(SECS(30)).await;
                self.pg.restart().await;
                self.note(fault, "stopped (immediate) for 30 s".into());
            }
        }
        true
    }

    /// A running cell of `kind` this colony started, at random (a harvest
    /// cell running a job if there is one); its pid is checked to be that
    /// cell before anything is sent to it.
    async fn pick_cell(&mut self, kind: &str) -> Option<(uuid::Uuid, nix::unistd::Pid, bool)> {
        let cells: Vec<(uuid::Uuid, Option<String>, bool)> = sqlx::query_as(
            "SELECT c.id, c.backend_ref,
                    EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'running' AND j.attempted_by = c.id::text)
               FROM cells c WHERE c.kind::text = $1 AND c.state IN ('starting', 'running') ORDER BY c.started_at",
        )
        .bind(kind)
        .fetch_all(&self.colony.rig.pool)
        .await
        .ok()?;
        let alive: Vec<(uuid::Uuid, nix::unistd::Pid, bool)> = cells
            .into_iter()
            .filter_map(|(cell, backend_ref, busy)| {
                let pid: i32 = backend_ref?.parse().ok()?;
                let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
                let marker = format!("COLONY_CELL_ID={cell}");
                environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()).then_some((
                    cell,
                    nix::unistd::Pid::from_raw(pid),
                    busy,
                ))
            })
            .collect();
        let busy: Vec<_> = alive.iter().filter(|c| c.2).cloned().collect();
        let pool = if busy.is_empty() { alive } else { busy };
        pool.choose(&mut self.rng).cloned()
    }
}

/// Count what the colony kept, lost and doubled.
async fn audit(
    colony: &Colony,
    source: &LiveSource,
    live: &[String],
    killed: &HashMap<uuid::Uuid, DateTime<Utc>>,
    report: &mut Report,
) {
    let pool = &colony.rig.pool;
    for name in live {
        let published: BTreeSet<u64> = source.published(name).iter().map(|p| p.0).collect();
        type Row = (i64, i32, i64, bool, i32, Option<String>, Option<String>, i64, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT s.recording_id, s.epoch, s.media_sequence, s.is_gap, s.gap_count, s.gap_reason, s.object_key, s.bytes, s.warning
               FROM segments s JOIN recordings r ON r.id = s.recording_id JOIN channels c ON c.id = r.channel_id
              WHERE c.login = $1 AND r.source = 'live' ORDER BY s.recording_id, s.epoch, s.media_sequence",
        )
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        let mut ledgered: BTreeSet<String> = BTreeSet::new();
        for (_, _, seq, is_gap, count, reason, key, bytes, warning) in &rows {
            if *is_gap {
                report.gap_segments += (*count).max(1) as u64;
                let reason = reason.clone().unwrap_or_default();
                let reason: String = reason.chars().take(80).collect();
                *report.gap_reasons.entry(reason).or_default() += (*count).max(1) as u64;
                continue;
            }
            *held.entry(*seq as u64).or_default() += 1;
            if warning.as_deref().is_some_and(|w| w.starts_with("adopted")) {
                report.adopted += 1;
            }
            if let Some(key) = key {
                ledgered.insert(key.clone());
                let object = colony::storage::ObjectKey::parse(key).ok();
                let meta = match object {
                    Some(k) => colony.rig.store.head(&k).await.ok(),
                    None => None,
                };
                if meta.is_none_or(|m| m.size as i64 != *bytes) {
                    report.damaged += 1;
                }
            }
        }
        report.published += published.len() as u64;
        report.stored += held.len() as u64;
        report.missing += published.iter().filter(|s| !held.contains_key(s)).count() as u64;
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
            let Ok(prefix) = colony::storage::ObjectKey::parse(&prefix) else { continue };
            for object in colony.rig.store.list(Some(&prefix)).await.unwrap_or_default() {
                let key = object.key.to_string();
                let segment = key.rsplit('/').next().is_some_and(|f| f.ends_with(".ts") && f.len() == 11);
                if segment && !ledgered.contains(&key) {
                    report.unledgered += 1;
                }
            }
        }
    }

    let jobs: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, kind, state::text, last_error FROM jobs ORDER BY id").fetch_all(pool).await.unwrap();
    report.jobs = jobs.len() as u64;
    for (id, kind, state, error) in &jobs {
        if state == "succeeded" {
            report.jobs_succeeded += 1;
        } else {
            report.jobs_lost.push(format!("job {id} ({kind}) {state}: {}", error.clone().unwrap_or_default()));
        }
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

/// The side effect every execution logs: `job started` and `job succeeded`
/// (written only once the success is recorded), in the cells' JSON logs.
/// A job succeeded twice, or two executions of one job that ran at the same
/// time, is a job executed twice.
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
        report.reruns += list.len().saturating_sub(1) as u64;
        if list.iter().filter(|r| r.succeeded).count() > 1 {
            report.jobs_done_twice += 1;
        }
        for pair in list.windows(2) {
            if pair[1].start < pair[0].end {
                report.overlapping_runs.push(format!(
                    "job {job}: cell {} ran {}..{}, cell {} started {}",
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
        assert_eq!(report.reruns, 2);

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
            (report.jobs_done_twice, report.overlapping_runs.len(), report.reruns),
            (0, 0, 2),
            "{:?}",
            report.overlapping_runs
        );
    }
}
