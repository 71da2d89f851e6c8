//! Least privilege in Postgres (issue 22, finding 4): every cell shared the
//! owner's all-powerful role, so one cell's URL could read every webhook's
//! secret and the platform tokens, and write a channel's resolver.
//!
//! Here each part connects as the login `mothership db roles` gives it, and
//! every statement its role must not run fails with a permission error
//! (SQLSTATE 42501), while the statements its work needs succeed. The rest
//! of the suite runs its cells on these same roles (`tests/support/pg.rs`).

use std::process::Stdio;

use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::pg::{Role, TestDb};
use sqlx::{Connection, Executor, PgConnection};

/// Run `sql` as `role`; Ok, or the SQLSTATE it failed with.
async fn run_as(db: &TestDb, role: Role, sql: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(&db.role_url(role)).await.expect("the role's login connects");
    match conn.execute(sql).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned()).unwrap_or_default()),
    }
}

async fn seeded() -> TestDb {
    let db = TestDb::migrated().await;
    let mut owner = PgConnection::connect(&db.url).await.unwrap();
    owner
        .execute(
            "INSERT INTO channels (login, display_name, source_kind, source_url) VALUES ('c', 'c', 'hls', 'http://x/');
             INSERT INTO webhooks (url, events, secret) VALUES ('https://h.example/', '{job.dead}', 'whsec_AAAA');
             INSERT INTO platform_tokens (platform, client_id, access_token, expires_at)
                  VALUES ('twitch', 'id', 'tok3n', now() + interval '1 hour');",
        )
        .await
        .unwrap();
    db
}

/// What no cell may do: read a secret it does not use, or write the rows
/// that decide what runs where.
const FORBIDDEN_TO_CELLS: &[&str] = &[
    "SELECT secret FROM webhooks",
    "SELECT url FROM webhooks",
    "SELECT access_token FROM platform_tokens",
    "UPDATE channels SET resolver_profile = 'evil'",
    "UPDATE channels SET source_url = 'http://evil.example/'",
    "INSERT INTO channels (login, display_name, source_kind, source_url) VALUES ('x', 'x', 'hls', 'http://x/')",
    "DELETE FROM channels",
    "INSERT INTO webhooks (url, events, secret) VALUES ('https://evil.example/', '{job.dead}', 'whsec_AAAA')",
    "UPDATE platform_tokens SET access_token = 'x'",
    "SELECT * FROM decisions",
    "DELETE FROM ticks",
    "UPDATE colony SET instance_id = gen_random_uuid()",
    "CREATE TABLE planted (x int)",
    "ALTER TABLE channels ADD COLUMN planted int",
    "DROP TABLE segments",
];

#[tokio::test]
async fn each_role_is_refused_what_it_must_not_do_and_allowed_its_work() {
    let db = seeded().await;
    for role in [Role::Observer, Role::Harvest] {
        for sql in FORBIDDEN_TO_CELLS {
            assert_eq!(run_as(&db, role, sql).await, Err("42501".into()), "{role} ran: {sql}");
        }
        // What a cell's work needs.
        for sql in [
            "SELECT login, source_url, resolver_profile, allowed_hosts FROM channels",
            "SELECT version FROM _sqlx_migrations",
            "SELECT count(*) FROM jobs",
            "SELECT nextval('job_lease_generation')",
            "INSERT INTO cells (id, kind, backend, state, host, version)
             VALUES (gen_random_uuid(), 'harvest', 'process', 'running', 'h', '0')",
            "UPDATE cells SET last_heartbeat = now()",
        ] {
            assert_eq!(run_as(&db, role, sql).await, Ok(()), "{role} could not: {sql}");
        }
    }
    // An observer queues post-processing but never claims or rewrites jobs.
    assert_eq!(run_as(&db, Role::Observer, "UPDATE jobs SET state = 'cancelled'").await, Err("42501".into()));
    assert_eq!(run_as(&db, Role::Observer, "DELETE FROM recordings").await, Err("42501".into()));
    assert_eq!(run_as(&db, Role::Harvest, "UPDATE jobs SET priority = 1").await, Ok(()));
    // The dashboard reads and takes the CLI's admin actions, nothing more.
    for sql in [
        "SELECT secret FROM webhooks",
        "SELECT access_token FROM platform_tokens",
        "UPDATE channels SET resolver_profile = 'evil'",
        "UPDATE channels SET source_url = 'http://evil.example/'",
        "UPDATE recordings SET state = 'failed'",
        "DELETE FROM segments",
        "INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs) VALUES (1, 0, 0, 1)",
        "DELETE FROM jobs",
        "CREATE TABLE planted (x int)",
    ] {
        assert_eq!(run_as(&db, Role::Web, sql).await, Err("42501".into()), "web ran: {sql}");
    }
    for sql in [
        "SELECT id, url, events, format, enabled FROM webhooks",
        "SELECT * FROM decisions",
        "UPDATE channels SET enabled = false, probed_at = NULL, updated_at = now()",
        "INSERT INTO channels (login, display_name, source_kind, source_url) VALUES ('w', 'w', 'hls', 'http://x/')",
    ] {
        assert_eq!(run_as(&db, Role::Web, sql).await, Ok(()), "web could not: {sql}");
    }
    // The mothership's role runs the tick's statements, not the owner's.
    for sql in ["SELECT secret FROM webhooks", "UPDATE channels SET probe_error = NULL", "DELETE FROM ticks"] {
        assert_eq!(run_as(&db, Role::Mothership, sql).await, Ok(()), "mothership could not: {sql}");
    }
    for sql in ["CREATE TABLE planted (x int)", "DELETE FROM _sqlx_migrations", "DROP TABLE ticks"] {
        assert_eq!(run_as(&db, Role::Mothership, sql).await, Err("42501".into()), "mothership ran: {sql}");
    }
}

/// A tick connected as a `colony_mothership` login (not the owner) does its
/// whole pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_tick_runs_as_the_mothership_role() {
    let colony = Colony::new(Rig::file().await);
    colony.rig.channel("quiet", "http://127.0.0.1:9/x.m3u8").await;
    let mut tick = colony.command(&["tick", "--json"]);
    tick.env("DATABASE_URL", colony.rig.db.role_url(Role::Mothership));
    let out = tick.stderr(Stdio::piped()).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(report["probes"]["probed"], 1, "{report:#}");
}

/// `mothership db roles` makes each role URL's user a login of its role
/// with the URL's password (a SCRAM verifier computed here: the clear
/// password never reaches the server), again safely, and refuses a URL that
/// names the owner.
#[tokio::test(flavor = "multi_thread")]
async fn db_roles_makes_logins_that_sign_in_with_their_passwords() {
    let owner = TestDb::password_protected("owner-pw-0123456789").await;
    let users: Vec<String> =
        (0..3).map(|_| format!("colony_dbr_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])).collect();
    let url_of = |user: &str, password: &str| {
        let mut url = url::Url::parse(&owner.url).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    };
    let roles = |extra: &[(&str, String)]| {
        let mut cmd = tokio::process::Command::new(colony_tests::bins::bin("mothership"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &owner.url)
            .args(["db", "roles"])
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let env = [
        ("COLONY_OBSERVER_DATABASE_URL", url_of(&users[0], "obs-pw-1")),
        ("COLONY_HARVEST_DATABASE_URL", url_of(&users[1], "hv-pw-2")),
        ("COLONY_WEB_DATABASE_URL", url_of(&users[2], "web-pw-3")),
    ];
    // The owner here has no CREATEROLE: the roles come from the cluster's admin.
    let mut admin = PgConnection::connect(colony_tests::pg::server_url()).await.unwrap();
    let owner_role = url::Url::parse(&owner.url).unwrap().username().to_owned();
    admin.execute(format!("ALTER ROLE {owner_role} CREATEROLE").as_str()).await.unwrap();
    let out = roles(&env).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for user in &users {
        assert!(stdout.contains(&format!("login {user} created")), "{stdout}");
    }
    assert!(stdout.contains("no login made: COLONY_MOTHERSHIP_DATABASE_URL is not set"), "{stdout}");
    // Again: nothing breaks, the logins are updated.
    let again = roles(&env).output().await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(stdout.contains(&format!("login {} updated", users[0])), "{stdout}\n{stderr}");
    // The passwords work over scram-sha-256 (members of colony_password must give theirs).
    for (i, user) in users.iter().enumerate() {
        admin.execute(format!("GRANT colony_password TO {user}").as_str()).await.unwrap();
        let right = &env[i].1;
        assert!(PgConnection::connect(right).await.is_ok(), "{user} cannot sign in with its password");
        let wrong = url_of(user, "not-the-password");
        assert!(PgConnection::connect(&wrong).await.is_err(), "{user} signed in with a wrong password");
    }
    // The harvest login reads no secret.
    let mut harvest = PgConnection::connect(&env[1].1).await.unwrap();
    let err = harvest.execute("SELECT secret FROM webhooks").await.unwrap_err();
    assert_eq!(err.as_database_error().and_then(|d| d.code()).as_deref(), Some("42501"));
    // A role URL that names the owner is refused, in one line.
    let out = roles(&[("COLONY_HARVEST_DATABASE_URL", owner.url.clone())]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("a user of its own") && !stderr.contains("owner-pw"), "{stderr}");
    for user in &users {
        let _ = admin.execute(format!("DROP OWNED BY {user}; DROP ROLE {user}").as_str()).await;
    }
}
