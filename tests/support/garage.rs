//! Garage for tests: one node started once per machine with the layout
//! applied, a key imported and a bucket created through its CLI, in the order
//! DESIGN.md gives. The binary comes from `GARAGE_BIN`, PATH or
//! `~/.cargo/bin/garage` (`cargo install garage --locked`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use colony::storage::{StorageArgs, StorageUrl};

use crate::proc::{find_program, free_port, lock, port_open, run};

pub const REGION: &str = "garage";
pub const BUCKET: &str = "colony-test";

#[derive(Debug, Clone)]
pub struct Garage {
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    pub config: PathBuf,
}

impl Garage {
    /// Environment for a child process (and for the SDK in this one).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("COLONY_S3_PATH_STYLE", "true".to_owned()),
        ]
    }

    /// Storage arguments pointing at `s3://bucket/prefix` on this node.
    pub fn storage_args(&self, bucket: &str, prefix: &str) -> StorageArgs {
        // The SDK reads credentials from the environment; the test process
        // sets them once (same values for every test).
        for (k, v) in self.env() {
            if std::env::var(k).ok().as_deref() != Some(&v) {
                // SAFETY: tests only ever set these to the same values.
                unsafe { std::env::set_var(k, v) };
            }
        }
        StorageArgs {
            storage_url: StorageUrl::parse(&format!("s3://{bucket}/{prefix}")).unwrap(),
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: Some(REGION.to_owned()),
            s3_path_style: true,
            s3_multipart_threshold_mib: 5,
        }
    }

    /// A client of the S3 API with this node's key.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(&self.key_id, &self.secret, None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The ETag of an object, straight from the S3 API (a multipart object's
    /// ends in `-<parts>`).
    pub async fn etag(&self, full_key: &str) -> String {
        let head = self.client().head_object().bucket(&self.bucket).key(full_key).send().await;
        head.unwrap().e_tag.unwrap_or_default()
    }

    /// Let pages from any origin GET the bucket's objects, as a dashboard
    /// whose player fetches presigned media needs (the operator's step in
    /// docs/OPERATIONS.md).
    pub async fn allow_cors_get(&self) {
        use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
        let rule = CorsRule::builder()
            .allowed_methods("GET")
            .allowed_methods("HEAD")
            .allowed_origins("*")
            .allowed_headers("*")
            .max_age_seconds(3600)
            .build()
            .unwrap();
        self.client()
            .put_bucket_cors()
            .bucket(&self.bucket)
            .cors_configuration(CorsConfiguration::builder().cors_rules(rule).build().unwrap())
            .send()
            .await
            .unwrap();
    }

    /// Run a garage CLI command against this node.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run(Command::new(garage_bin()).arg("-c").arg(&self.config).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return p.into();
    }
    let cargo_bin =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")).into_iter().collect::<Vec<_>>();
    find_program("garage", &cargo_bin)
        .expect("garage is not installed: `cargo install garage --locked` (the CI script does)")
}

/// The shared test node, started on first use.
pub fn garage() -> &'static Garage {
    static GARAGE: OnceLock<Garage> = OnceLock::new();
    GARAGE.get_or_init(|| start(&std::env::temp_dir().join("colony-test-garage")))
}

/// Start (or find running) a node in `dir`. Tests that stop and restart a
/// node use a private dir so they never disturb the shared one.
pub fn start(dir: &Path) -> Garage {
    std::fs::create_dir_all(dir).expect("create garage dir");
    let _guard = lock(&dir.with_extension("lock"));
    let state = dir.join("state");
    if let Some(g) = std::fs::read_to_string(&state).ok().and_then(|s| parse_state(&s, dir)) {
        let port: u16 = g.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        if port_open(port) {
            return g;
        }
    }
    if let Ok(pid) = std::fs::read_to_string(dir.join("pid")) {
        kill_if_garage(pid.trim());
    }
    for sub in ["meta", "data"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
    let (rpc, s3, admin) = (free_port(), free_port(), free_port());
    let config = dir.join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
            dir = dir.display(),
            secret = random_hex(32),
        ),
    )
    .unwrap();
    spawn_server(dir, &config);

    let g = Garage {
        endpoint: format!("http://127.0.0.1:{s3}"),
        key_id: format!("GK{}", random_hex(12)),
        secret: random_hex(32),
        bucket: BUCKET.to_owned(),
        config: config.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(garage_bin())
        .arg("-c")
        .arg(&config)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "garage did not come up; see {}", dir.join("garage.log").display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let node = g.cli(&["node", "id", "-q"]);
    let node = node.trim().split('@').next().unwrap().to_owned();
    g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
    g.cli(&["layout", "apply", "--version", "1"]);
    g.cli(&["key", "import", "--yes", "-n", "colony-test", &g.key_id, &g.secret]);
    g.cli(&["bucket", "create", BUCKET]);
    g.cli(&["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "colony-test"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !port_open(s3) {
        assert!(Instant::now() < deadline, "garage S3 API did not open");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&state, format!("{}\n{}\n{}\n", g.endpoint, g.key_id, g.secret)).unwrap();
    g
}

/// Start `garage server` detached: the node outlives this test process and
/// is shared with the next ones (found again through `state` and `pid`).
fn spawn_server(dir: &Path, config: &Path) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("garage.log")).unwrap();
    #[allow(clippy::zombie_processes)]
    let child = Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .arg("server")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start garage server");
    std::fs::write(dir.join("pid"), child.id().to_string()).unwrap();
}

impl Garage {
    fn dir(&self) -> &Path {
        self.config.parent().unwrap()
    }

    fn s3_port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Kill the node (storage outage). Only for private nodes.
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir().join("pid")).unwrap();
        kill_if_garage(pid.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.s3_port()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start the node again on the same data, key and bucket.
    pub fn restart(&self) {
        spawn_server(self.dir(), &self.config);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(self.s3_port()) {
            assert!(Instant::now() < deadline, "garage did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Stop a recorded garage pid, but only if that pid still is garage: after a
/// reboot the number may belong to anything.
fn kill_if_garage(pid: &str) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("garage") {
        let _ = Command::new("kill").arg(pid).status();
    }
}

fn parse_state(s: &str, dir: &Path) -> Option<Garage> {
    let mut lines = s.lines();
    Some(Garage {
        endpoint: lines.next()?.to_owned(),
        key_id: lines.next()?.to_owned(),
        secret: lines.next()?.to_owned(),
        bucket: BUCKET.to_owned(),
        config: dir.join("garage.toml"),
    })
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}
