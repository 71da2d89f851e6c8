//! A rig for observer-cell tests: a migrated database, a channel on the
//! test live source, a recording assigned under a lease token, and the real
//! `observer-cell` binary started with the environment contract.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use colony::recording::{Assignment, LedgerRow};
use colony::storage::{ObjectStore, StorageArgs};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::bins::bin;
use crate::pg::{Role, TestDb};

/// The resolver profile test channels name (`--resolver printf`): it prints
/// the page URL back, so the page is the playlist.
pub const PRINTF_PROFILE: (&str, &str) = ("COLONY_RESOLVER_PRINTF", "printf '%s\\n' {url}");

pub struct Rig {
    pub db: TestDb,
    pub pool: PgPool,
    pub store: Arc<dyn ObjectStore>,
    pub storage_env: Vec<(&'static str, String)>,
    /// Where file:// storage lives (None for S3).
    pub media_root: Option<std::path::PathBuf>,
    pub spool: tempfile::TempDir,
    /// The key prefix the colony's objects live under in the bucket (S3 only).
    pub bucket_prefix: String,
    _media_dir: Option<tempfile::TempDir>,
}

impl Rig {
    /// Database plus file:// storage in a temp dir.
    pub async fn file() -> Self {
        Self::file_on(crate::pg::server_url()).await
    }

    /// The same, with the database on another Postgres server.
    pub async fn file_on(admin: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let args = StorageArgs {
            storage_url: url.parse().unwrap(),
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_multipart_threshold_mib: 16,
        };
        let root = dir.path().to_owned();
        let db = TestDb::migrated_on(admin).await;
        Self::with_storage(db, args, vec![("COLONY_STORAGE_URL", url)], Some(root), Some(dir)).await
    }

    /// Database plus S3 storage on a Garage node under a fresh prefix.
    pub async fn garage(g: &crate::garage::Garage) -> Self {
        Self::garage_with(g, TestDb::migrated_on(crate::pg::server_url()).await).await
    }

    /// S3 storage on a Garage node and a database of the test's making.
    pub async fn garage_with(g: &crate::garage::Garage, db: TestDb) -> Self {
        let prefix = format!("obs-{}", uuid::Uuid::new_v4().simple());
        let args = g.storage_args(&g.bucket, &prefix);
        let mut env = g.env();
        env.push(("COLONY_STORAGE_URL", format!("s3://{}/{prefix}", g.bucket)));
        let mut rig = Self::with_storage(db, args, env, None, None).await;
        rig.bucket_prefix = prefix;
        rig
    }

    async fn with_storage(
        db: TestDb,
        args: StorageArgs,
        storage_env: Vec<(&'static str, String)>,
        media_root: Option<std::path::PathBuf>,
        media_dir: Option<tempfile::TempDir>,
    ) -> Self {
        let pool = db.pool(8).await;
        let store = colony::storage::open(&args).await.unwrap();
        Self {
            db,
            pool,
            store,
            storage_env,
            media_root,
            spool: tempfile::tempdir().unwrap(),
            bucket_prefix: String::new(),
            _media_dir: media_dir,
        }
    }

    /// Add a channel recording `url`; returns its id.
    pub async fn channel(&self, login: &str, url: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO channels (login, display_name, source_kind, source_url, pipeline)
             VALUES ($1, $1, 'hls', $2, '[\"thumbnails\", \"export\"]') RETURNING id",
        )
        .bind(login)
        .bind(url)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Add a channel whose HLS URL comes from running the resolver
    /// `profile` (a `COLONY_RESOLVER_<NAME>` of the cells' hosts) on `url`.
    pub async fn channel_with_profile(&self, login: &str, url: &str, profile: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO channels (login, display_name, source_kind, source_url, resolver_profile, pipeline)
             VALUES ($1, $1, 'command', $2, $3, '[]') RETURNING id",
        )
        .bind(login)
        .bind(url)
        .bind(profile)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Add a Twitch channel named `login` (its handle too), recorded with no
    /// pipeline; its video comes through the host's Twitch resolver template.
    pub async fn twitch_channel(&self, login: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO channels (login, display_name, source_kind, source_url, platform, platform_handle, pipeline)
             VALUES ($1, $1, 'platform', 'https://www.twitch.tv/' || $1, 'twitch', $1, '[]') RETURNING id",
        )
        .bind(login)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// The Twitch resolver template that finds a handle's stream on `source`.
    pub fn twitch_resolver(source: &crate::live::LiveSource) -> String {
        format!("printf '%s\\n' {}", source.media_url("{handle}"))
    }

    /// Hand the channel's recording to a new cell, as the mothership does.
    pub async fn assign(&self, channel_id: i64) -> (uuid::Uuid, Assignment) {
        let cell = uuid::Uuid::new_v4();
        (cell, colony::recording::assign_live(&self.pool, channel_id, cell).await.unwrap())
    }

    /// A binary with this rig's database and storage and nothing else from
    /// the test's environment. A cell connects as its role's login, as the
    /// mothership's launchers start it; anything else as the owner.
    pub fn cell(&self, name: &str) -> Command {
        self.cell_at(name, &bin(name))
    }

    /// [`Rig::cell`] with another program in front: a wrapper script that
    /// runs `name` in a network namespace, say.
    pub fn cell_at(&self, name: &str, program: &std::path::Path) -> Command {
        let url = match name {
            "observer-cell" => self.db.role_url(Role::Observer),
            "harvest-cell" => self.db.role_url(Role::Harvest),
            _ => self.db.url.clone(),
        };
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .env("COLONY_LOG", "info,colony=debug,aws=warn,sqlx=warn")
            // The resolver the tests' channels use; nothing else may run.
            .env("COLONY_RESOLVERS", "printf")
            .env(PRINTF_PROFILE.0, PRINTF_PROFILE.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.storage_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start `observer-cell` for an assignment with test-friendly timings
    /// (set through the environment, so `extra` flags override them).
    pub fn observer(&self, channel_id: i64, login: &str, cell: uuid::Uuid, a: Assignment, extra: &[&str]) -> Child {
        self.observer_command(channel_id, login, cell, a, extra).spawn().expect("start observer-cell")
    }

    /// The same, not started yet, for a test that changes its environment.
    pub fn observer_command(
        &self,
        channel_id: i64,
        login: &str,
        cell: uuid::Uuid,
        a: Assignment,
        extra: &[&str],
    ) -> Command {
        self.observer_command_at(&bin("observer-cell"), channel_id, login, cell, a, extra)
    }

    /// [`Rig::observer_command`] through another program in front of
    /// `observer-cell` (a [`crate::netns::CellNet::wrap`] script, say).
    pub fn observer_command_at(
        &self,
        program: &std::path::Path,
        channel_id: i64,
        login: &str,
        cell: uuid::Uuid,
        a: Assignment,
        extra: &[&str],
    ) -> Command {
        let mut cmd = self.cell_at("observer-cell", program);
        cmd.env("OBSERVER_RECORDING_ID", a.recording_id.to_string())
            .env("OBSERVER_CHANNEL_ID", channel_id.to_string())
            .env("OBSERVER_CHANNEL_LOGIN", login)
            .env("OBSERVER_CHANNEL_NAME", format!("{login} (test)"))
            .env("COLONY_CELL_ID", cell.to_string())
            .env("COLONY_LEASE_TOKEN", a.lease_token.to_string())
            .env("COLONY_SPOOL_DIR", self.spool.path())
            .env("OBSERVER_STANDBY", "3s")
            .env("COLONY_HEARTBEAT_INTERVAL", "1s")
            .env("OBSERVER_OFFLINE_AFTER", "3s")
            .env("OBSERVER_SHUTDOWN_DEADLINE", "15s")
            .env("OBSERVER_FINALIZE_DEADLINE", "60s")
            .env("OBSERVER_FETCH_TIMEOUT", "2s")
            .args(extra);
        cmd
    }

    /// Start `harvest-cell` against this rig's database and storage.
    pub fn harvest(&self, extra: &[&str]) -> Child {
        self.cell("harvest-cell")
            .env("HARVEST_POLL", "500ms")
            .env("HARVEST_FETCH_TIMEOUT", "5s")
            .args(extra)
            .spawn()
            .expect("start harvest-cell")
    }

    pub async fn rows(&self, recording_id: i64) -> Vec<LedgerRow> {
        sqlx::query_as(
            "SELECT epoch, media_sequence, duration_secs, bytes, object_key, init_key, program_date_time, source,
                    is_gap, gap_count, is_ad, discontinuity, gap_reason, warning
               FROM segments WHERE recording_id = $1 ORDER BY epoch, media_sequence",
        )
        .bind(recording_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Wait until the recording has at least `n` stored segments.
    pub async fn wait_segments(&self, recording_id: i64, n: usize, timeout: Duration) {
        crate::eventually(&format!("{n} segments in recording {recording_id}"), timeout, || async {
            let have = self.rows(recording_id).await.iter().filter(|r| !r.is_gap).count();
            (have >= n).then_some(())
        })
        .await
    }

    pub async fn recording_state(&self, recording_id: i64) -> String {
        sqlx::query_scalar("SELECT state::text FROM recordings WHERE id = $1")
            .bind(recording_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Wait for a child to exit within `timeout`; returns its code and stderr.
pub async fn wait_exit(child: Child, timeout: Duration) -> (Option<i32>, String) {
    let out =
        tokio::time::timeout(timeout, child.wait_with_output()).await.expect("observer did not exit in time").unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// `ffmpeg -i playlist -c copy -f null -` must succeed; returns the media time
/// it read, in seconds.
pub fn ffmpeg_reads(playlist: &std::path::Path) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", "error", "-i"])
        .arg(playlist)
        .args(["-c", "copy", "-f", "null", "-progress", "pipe:1", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg could not read {}: {stderr}", playlist.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let us: i64 = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.parse().ok())
        .next_back()
        .unwrap_or(0);
    us as f64 / 1e6
}
