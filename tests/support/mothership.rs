//! A rig for mothership tests: a [`Rig`] (database, storage, spool) plus the
//! `mothership` binary with test-friendly timings, and a cleanup that kills
//! every cell this colony's process launcher started.

use std::process::{Output, Stdio};
use std::time::Duration;

use mothership::launcher::Launcher;
use mothership::launcher::process::{ProcessArgs, ProcessLauncher};
use tokio::process::Command;

use crate::observer::Rig;
use crate::pg::Role;

pub struct Colony {
    pub rig: Rig,
    pub logs: tempfile::TempDir,
}

/// Timings that make a tick's consequences visible within seconds.
pub const FAST: &[(&str, &str)] = &[
    ("COLONY_LAUNCHER", "process"),
    ("COLONY_PROBE_EVERY", "0s"),
    ("COLONY_PROBE_TIMEOUT", "5s"),
    ("COLONY_HEARTBEAT_TIMEOUT", "4s"),
    ("COLONY_START_GRACE", "8s"),
    ("COLONY_SCALE_DOWN_WINDOW", "0s"),
    ("COLONY_IDLE_COOLDOWN", "0s"),
    ("COLONY_JOBS_PER_HARVEST_CELL", "2"),
    ("COLONY_START_BACKOFF", "1s"),
    // Inherited by the cells:
    ("COLONY_HEARTBEAT_INTERVAL", "1s"),
    ("OBSERVER_STANDBY", "3s"),
    ("OBSERVER_OFFLINE_AFTER", "3s"),
    ("OBSERVER_FETCH_TIMEOUT", "2s"),
    ("OBSERVER_SHUTDOWN_DEADLINE", "15s"),
    ("OBSERVER_FINALIZE_DEADLINE", "60s"),
    ("HARVEST_IDLE_EXIT", "2s"),
    ("HARVEST_POLL", "500ms"),
];

impl Colony {
    pub fn new(rig: Rig) -> Self {
        Self { rig, logs: tempfile::tempdir().unwrap() }
    }

    /// `mothership` with this colony's database, storage and fast timings.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(&crate::bins::bin("mothership"), args)
    }

    /// [`Colony::command`] through another program in front of `mothership`
    /// (a wrapper that runs it in a network namespace, say).
    pub fn command_at(&self, program: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = self.rig.cell_at("mothership", program);
        for (k, v) in FAST {
            cmd.env(k, v);
        }
        cmd.env("COLONY_PROCESS_LOG_DIR", self.logs.path())
            // The cells it starts connect as their own roles.
            .env("COLONY_OBSERVER_DATABASE_URL", self.rig.db.role_url(Role::Observer))
            .env("COLONY_HARVEST_DATABASE_URL", self.rig.db.role_url(Role::Harvest))
            .env("COLONY_SPOOL_DIR", self.rig.spool.path())
            .env("HOME", self.logs.path())
            .args(args)
            .stdout(Stdio::piped());
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// Platform channels straight into the database, as `channel add` writes
    /// them, for tests and benches of many: `(login, handle, platform id)`.
    pub async fn add_platform_channels(&self, platform: &str, page: &str, rows: &[(String, String, Option<String>)]) {
        let logins: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let handles: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        let ids: Vec<Option<String>> = rows.iter().map(|r| r.2.clone()).collect();
        sqlx::query(
            "INSERT INTO channels (login, display_name, source_kind, source_url, platform, platform_handle, platform_id)
             SELECT l, l, 'platform', $4 || h, $5, h, i FROM UNNEST($1::text[], $2::text[], $3::text[]) AS r(l, h, i)",
        )
        .bind(&logins)
        .bind(&handles)
        .bind(&ids)
        .bind(page)
        .bind(platform)
        .execute(&self.rig.pool)
        .await
        .unwrap();
    }

    /// `mothership tick --json`, which must carry out its plan (exit 0, or 4
    /// when some actions failed); its summary.
    pub async fn tick(&self, extra: &[&str]) -> serde_json::Value {
        self.tick_env(extra, &[]).await
    }

    /// [`Colony::tick`] with these variables set too (a platform fake's
    /// credentials and URLs, say).
    pub async fn tick_env(&self, extra: &[&str], env: &[(&str, String)]) -> serde_json::Value {
        let mut args = vec!["tick", "--json"];
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            matches!(out.status.code(), Some(0 | 4)),
            "tick failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("tick printed no JSON ({e}): {stdout}"))
    }

    /// Active cells of a kind: (id, backend_ref, state).
    pub async fn active(&self, kind: &str) -> Vec<(uuid::Uuid, Option<String>, String)> {
        sqlx::query_as(
            "SELECT id, backend_ref, state::text FROM cells
              WHERE kind::text = $1 AND state IN ('starting', 'running', 'stopping') ORDER BY started_at",
        )
        .bind(kind)
        .fetch_all(&self.rig.pool)
        .await
        .unwrap()
    }

    /// How many cells are starting, running or stopping.
    pub async fn active_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM cells WHERE state IN ('starting', 'running', 'stopping')")
            .fetch_one(&self.rig.pool)
            .await
            .unwrap()
    }

    /// Kill every process this colony's launcher started (test cleanup).
    pub async fn kill_cells(&self) {
        let instance = mothership::observe::instance_id(&self.rig.pool).await.unwrap();
        let args = ProcessArgs {
            process_observer_bin: None,
            process_harvest_bin: None,
            process_log_dir: Some(self.logs.path().into()),
        };
        let launcher = ProcessLauncher::new(instance, &args).unwrap();
        for i in launcher.list().await.unwrap() {
            let _ = launcher.reap(&i.backend_ref, i.cell_id, "test cleanup").await;
        }
    }

    /// A cell's log file, for assertion messages.
    pub fn log(&self, kind: &str, cell: uuid::Uuid) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{kind}-{cell}.log"))).unwrap_or_default()
    }
}

/// Poll until `n` is reached, running a tick each round.
pub async fn ticks_until(
    colony: &Colony,
    what: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let report = colony.tick(&[]).await;
        if check(&report) {
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last tick: {report:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
