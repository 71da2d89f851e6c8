//! The private cluster: `<dir>/postgres/data`, listening on 127.0.0.1 only,
//! with a generated password (`<dir>/postgres/password`, mode 0600). The
//! `initdb`/`pg_ctl` commands come from [`crate::pgcluster`], which the
//! test harness uses too; here they run on tokio's process API.

use std::path::{Path, PathBuf};

use crate::pgcluster::{self, PgTools};
use anyhow::Context;
use colony::exit::Exit;
use sqlx::PgPool;

use super::say;

pub(super) struct Cluster {
    pub dir: PathBuf,
    pub tools: PgTools,
    pub logs: PathBuf,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Create the cluster on first use, start it unless it runs, and make sure
    /// the `colony` database exists and is migrated. Returns its URL.
    pub async fn start(&self) -> anyhow::Result<String> {
        let password_file = self.dir.join("password");
        let port_file = self.dir.join("port");
        let root = nix::unistd::Uid::effective().is_root();
        if !self.data().join("PG_VERSION").exists() {
            say(format!("creating a private Postgres cluster in {}", self.data().display()));
            tokio::fs::create_dir_all(self.data()).await?;
            write_private(&password_file, &new_password())?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            write_private(&port_file, &port.to_string())?;
            if root {
                pgcluster::run("chown", pgcluster::chown_to_postgres(&self.dir)).await?;
                let dir = self.data();
                if !tokio::task::spawn_blocking(move || pgcluster::postgres_can_write(&dir)).await? {
                    return Err(Exit::config(format!(
                        "running as root, the cluster runs as user postgres, which cannot reach {}; \
                         choose a --dir it can reach, e.g. /var/lib/colony",
                        self.dir.display()
                    ))
                    .into());
                }
            }
            let pwfile = format!("--pwfile={}", password_file.display());
            let initdb = self.tools.initdb(
                &self.data(),
                &["--username=colony", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", &pwfile],
            );
            pgcluster::run("initdb", initdb).await?;
            let conf = format!(
                "\n# mothership up\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            );
            let mut f = std::fs::OpenOptions::new().append(true).open(self.data().join("postgresql.conf"))?;
            std::io::Write::write_all(&mut f, conf.as_bytes())?;
        }
        let password = std::fs::read_to_string(&password_file)
            .with_context(|| format!("reading {} (the cluster's password)", password_file.display()))?;
        let port: u16 = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("reading {}", port_file.display()))?;

        let running = tokio::process::Command::from(self.tools.status(&self.data())).output().await?.status.success();
        if running {
            say(format!("Postgres is already running on 127.0.0.1:{port}; using it"));
        } else {
            let log = self.logs.join("postgres.log");
            if root {
                std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
                let mut chown = std::process::Command::new("chown");
                chown.arg("postgres").arg(&log);
                pgcluster::run("chown", chown).await?;
            }
            say(format!("starting Postgres on 127.0.0.1:{port}"));
            pgcluster::run("pg_ctl start", self.tools.start(&self.data(), &log, None))
                .await
                .with_context(|| format!("see {}", log.display()))?;
        }

        let admin_url = format!("postgres://colony:{}@127.0.0.1:{port}/postgres", password.trim());
        let admin_pool = PgPool::connect(&admin_url).await.context("connecting to the private cluster")?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'colony')")
            .fetch_one(&admin_pool)
            .await?;
        if !exists {
            sqlx::query("CREATE DATABASE colony").execute(&admin_pool).await?;
        }
        admin_pool.close().await;
        let url = format!("postgres://colony:{}@127.0.0.1:{port}/colony", password.trim());
        let pool = PgPool::connect(&url).await.context("connecting to the colony database")?;
        let report = crate::migrate::run(&pool).await?;
        if !report.applied.is_empty() {
            say(format!("applied {} migration(s); schema is at version {}", report.applied.len(), report.version));
        }
        pool.close().await;
        Ok(url)
    }

    /// A login of its own for the cells of each role and for the dashboard,
    /// each with a password generated once (`<dir>/postgres/<role>.password`,
    /// 0600), and the grants of `mothership db roles`. Returns the URLs.
    pub async fn role_urls(&self, owner_url: &str) -> anyhow::Result<RoleLogins> {
        use crate::roles::{self, Role};
        let pool = PgPool::connect(owner_url).await.context("connecting to the colony database")?;
        let mut conn = pool.acquire().await?;
        roles::ensure_group_roles(&mut conn).await?;
        roles::grant(&pool).await?;
        let owner = url::Url::parse(owner_url).context("the cluster's URL")?;
        let mut login = async |role: Role| -> anyhow::Result<String> {
            let short = role.name().trim_start_matches("colony_");
            let file = self.dir.join(format!("{short}.password"));
            let password = match std::fs::read_to_string(&file) {
                Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
                _ => {
                    let p = new_password();
                    write_private(&file, &p)?;
                    p
                }
            };
            let mut url = owner.clone();
            let _ = url.set_username(&format!("colony_{short}_login"));
            let _ = url.set_password(Some(&password));
            roles::ensure_login(&mut conn, role, &colony::config::DatabaseUrl::parse(url.as_str())?).await?;
            Ok(url.to_string())
        };
        let (observer, harvest, web) =
            (login(Role::Observer).await?, login(Role::Harvest).await?, login(Role::Web).await?);
        drop(conn);
        pool.close().await;
        Ok(RoleLogins { observer, harvest, web })
    }

    /// A fast shutdown: open transactions roll back, everything committed stays.
    pub async fn stop(&self) -> anyhow::Result<()> {
        Ok(pgcluster::run("pg_ctl stop", self.tools.stop(&self.data(), "fast")).await?)
    }
}

/// A password for this machine's cluster and its logins: 32 alphanumerics.
fn new_password() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect()
}

/// The URLs `mothership up` hands its cells and its dashboard.
pub struct RoleLogins {
    pub observer: String,
    pub harvest: String,
    pub web: String,
}

pub(super) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
