//! PostgreSQL for tests: a private cluster under the temp dir, started once per
//! machine (initdb + pg_ctl on a free loopback port, as the `postgres` user when
//! run as root, which initdb refuses), unless `DATABASE_URL` names a server.
//! The commands come from `mothership::pgcluster`, as `mothership up`'s do.
//! Every test gets a fresh database named by a UUID, dropped when it ends,
//! with the colony's roles granted in it (`mothership db roles`): cells in
//! tests connect as `colony_test_observer` and `colony_test_harvest`, the
//! dashboard as `colony_test_web`, as a deployment's would.

use std::path::Path;
use std::sync::OnceLock;

use colony::config::DatabaseUrl;
use mothership::pgcluster::PgTools;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::proc::{free_port, is_root, lock, port_open, run};

/// Settings tuned for throwaway test data. The benchmark cluster keeps the
/// durable defaults.
const TEST_SETTINGS: &[&str] = &["fsync=off", "synchronous_commit=off", "full_page_writes=off"];

/// The admin URL of the shared test server.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_cluster(&std::env::temp_dir().join("colony-test-pg"), TEST_SETTINGS),
    })
}

/// The Postgres server a benchmark runs on: `url` if given, else the private
/// durable cluster (Postgres' defaults, fsync on) every bench shares.
pub async fn bench_server(url: Option<&str>) -> String {
    if let Some(url) = url {
        return url.to_owned();
    }
    tokio::task::spawn_blocking(|| start_cluster(&std::env::temp_dir().join("colony-bench-pg"), &[]))
        .await
        .expect("starting the bench cluster")
}

/// Start (or find running) a private cluster in `dir`; returns its admin URL.
pub fn start_cluster(dir: &Path, settings: &[&str]) -> String {
    std::fs::create_dir_all(dir).expect("create cluster dir");
    let _guard = lock(&dir.with_extension("lock"));
    let url_file = dir.join("url");
    if let Ok(url) = std::fs::read_to_string(&url_file) {
        let port: u16 =
            url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).unwrap_or(0);
        if port != 0 && port_open(port) {
            return url;
        }
    }
    let tools = pg_tools();
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    if is_root() {
        run(&mut mothership::pgcluster::chown_to_postgres(dir));
    }
    run(&mut tools.initdb(&data, &["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"]));
    let port = free_port();
    let mut options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=400 -c shared_buffers=256MB",
        dir.display()
    );
    for s in settings {
        options.push_str(&format!(" -c {s}"));
    }
    run(&mut tools.start(&data, &dir.join("postgres.log"), Some(&options)));
    std::fs::write(dir.join("options"), &options).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    std::fs::write(&url_file, &url).unwrap();
    url
}

/// Stop a private cluster at once (a database outage). Not for the shared one.
pub fn stop_cluster(dir: &Path) {
    run(&mut pg_tools().stop(&dir.join("data"), "immediate"));
}

/// Start a stopped private cluster again, on the same port and data.
pub fn restart_cluster(dir: &Path) {
    let options = std::fs::read_to_string(dir.join("options")).unwrap();
    run(&mut pg_tools().start(&dir.join("data"), &dir.join("postgres.log"), Some(&options)));
}

/// Put the scram line for `colony_password` members first in `pg_hba.conf`, once.
fn require_passwords(hba: &Path) {
    const LINE: &str = "host all +colony_password 127.0.0.1/32 scram-sha-256";
    let _guard = lock(&hba.with_extension("lock"));
    let text = std::fs::read_to_string(hba).expect("read pg_hba.conf");
    if !text.contains(LINE) {
        std::fs::write(hba, format!("{LINE}\n{text}")).expect("write pg_hba.conf");
    }
}

pub use mothership::roles::Role;

/// The login each role's parts use in tests.
pub fn test_login(role: Role) -> &'static str {
    match role {
        Role::Mothership => "colony_test_mothership",
        Role::Observer => "colony_test_observer",
        Role::Harvest => "colony_test_harvest",
        Role::Web => "colony_test_web",
    }
}

/// Make the colony's group roles and one login for each on the server at
/// `admin`, once per process and under a machine-wide lock: roles belong to
/// the whole cluster, while each test database grants them on its own.
fn ensure_test_logins(admin: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.iter().any(|a| a == admin) {
        return;
    }
    let owned = admin.to_owned();
    std::thread::spawn(move || {
        let _guard = lock(&std::env::temp_dir().join("colony-test-roles.lock"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut conn = PgConnection::connect(&owned).await.expect("connect to the test postgres server");
            mothership::roles::ensure_group_roles(&mut conn).await.expect("create the colony's roles");
            for role in Role::ALL {
                let mut url = url::Url::parse(&owned).unwrap();
                url.set_username(test_login(role)).unwrap();
                url.set_password(None).unwrap();
                let url = DatabaseUrl::parse(url.as_str()).unwrap();
                mothership::roles::ensure_login(&mut conn, role, &url).await.expect("make a test login");
            }
        });
    })
    .join()
    .expect("making the test logins");
    done.push(admin.to_owned());
}

/// The server's programs, found as `mothership up` finds them.
fn pg_tools() -> PgTools {
    PgTools::find().unwrap_or_else(|e| panic!("{e} (the CI script installs it)"))
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    /// An empty database: no schema.
    pub async fn empty() -> Self {
        Self::empty_on(server_url()).await
    }

    /// An empty database on another server (a private cluster).
    pub async fn empty_on(admin: &str) -> Self {
        let admin = admin.to_owned();
        let name = format!("colony_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the test postgres server");
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("create test database");
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        Self { name, url: url.to_string(), admin }
    }

    /// A database carrying this build's schema.
    pub async fn migrated() -> Self {
        Self::migrated_on(server_url()).await
    }

    pub async fn migrated_on(admin: &str) -> Self {
        let db = Self::empty_on(admin).await;
        let pool = db.pool(4).await;
        colony::db::migrate(&pool).await.expect("migrate test database");
        ensure_test_logins(admin);
        mothership::roles::grant(&pool).await.expect("grant the colony's roles");
        pool.close().await;
        db
    }

    /// This database's URL for the login of `role`: what the mothership
    /// hands its cells (`COLONY_OBSERVER_DATABASE_URL`, …).
    pub fn role_url(&self, role: Role) -> String {
        let mut url = url::Url::parse(&self.url).unwrap();
        url.set_username(test_login(role)).unwrap();
        url.set_password(None).unwrap();
        url.to_string()
    }

    /// A migrated database owned by a role that must give `password`
    /// (scram-sha-256 over TCP) on the shared test server, for tests that
    /// check a password never leaks. The shared cluster trusts its other
    /// roles; members of `colony_password` get a `pg_hba.conf` line of their own.
    pub async fn password_protected(password: &str) -> Self {
        let admin = server_url();
        let role = format!("colony_pw_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut conn = PgConnection::connect(admin).await.expect("connect to the test postgres server");
        conn.execute(
            "DO $$ BEGIN CREATE ROLE colony_password NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
        conn.execute(format!("CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE colony_password").as_str())
            .await
            .unwrap();
        let mut db = Self::empty_on(admin).await;
        conn.execute(format!("ALTER DATABASE \"{}\" OWNER TO {role}", db.name).as_str()).await.unwrap();
        if std::env::var("DATABASE_URL").map_or(true, |u| u.is_empty()) {
            require_passwords(&std::env::temp_dir().join("colony-test-pg/data/pg_hba.conf"));
            conn.execute("SELECT pg_reload_conf()").await.unwrap();
        }
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(Some(password)).unwrap();
        db.url = url.to_string();
        let pool = db.pool(2).await;
        colony::db::migrate(&pool).await.expect("migrate the password-protected database");
        ensure_test_logins(admin);
        mothership::roles::grant(&pool).await.expect("grant the colony's roles");
        pool.close().await;
        db
    }

    pub async fn pool(&self, max: u32) -> PgPool {
        sqlx::postgres::PgPoolOptions::new().max_connections(max).connect(&self.url).await.expect("connect test db")
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; use a private one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await.ok()
            })
        })
        .join();
    }
}
