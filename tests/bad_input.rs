//! Bad input: a wrong or unreachable DATABASE_URL, a malformed storage URL, a
//! bucket that does not exist. Each gives one clear line naming the problem,
//! a non-zero exit, never a panic, and never the password.

use std::process::{Command, Output};

use colony_tests::bins::bin;
use colony_tests::garage::garage;
use colony_tests::pg::TestDb;

fn mothership(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(bin("mothership"));
    cmd.args(args).env_remove("DATABASE_URL").env_remove("COLONY_STORAGE_URL").env("COLONY_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "expected one line on stderr, got:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_malformed_database_url_is_one_line_and_exit_2() {
    for bad in ["not-a-url", "mysql://root@db/colony", "postgres://u:hunter2@host:notaport/db"] {
        let out = mothership(&["migrate"], &[("DATABASE_URL", bad.to_owned())]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let line = one_line(&out);
        assert!(line.contains("DATABASE_URL is not a valid postgres URL"), "{line}");
        assert!(!line.contains("hunter2"), "password leaked: {line}");
    }
}

#[test]
fn a_missing_database_url_names_the_variable() {
    let out = mothership(&["migrate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("DATABASE_URL"));
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let url = format!("postgres://colony:hunter2@127.0.0.1:{}/colony", free_port());
    let out = mothership(&["migrate", "--db-connect-timeout", "3s"], &[("DATABASE_URL", url)]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out);
    assert!(line.contains("cannot connect to postgres at postgres://colony:***@127.0.0.1"), "{line}");
    assert!(!line.contains("hunter2"), "password leaked: {line}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named() {
    let db = TestDb::empty().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_path("no_such_database_here");
    let out = mothership(&["migrate"], &[("DATABASE_URL", url.to_string())]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out);
    assert!(line.contains("no_such_database_here"), "{line}");
}

#[tokio::test]
async fn a_malformed_storage_url_is_one_line_and_exit_2() {
    let db = TestDb::migrated().await;
    for bad in ["/var/lib/colony", "file://relative/dir", "s3://", "ftp://x/y", "s3://Bad_Bucket/x"] {
        let out = mothership(&["check"], &[("DATABASE_URL", db.url.clone()), ("COLONY_STORAGE_URL", bad.to_owned())]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let line = one_line(&out);
        assert!(line.contains("invalid storage URL"), "{line}");
    }
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_is_one_line_and_exit_2() {
    let db = TestDb::migrated().await;
    let g = tokio::task::spawn_blocking(garage).await.unwrap();
    let mut env: Vec<(&str, String)> = g.env();
    env.push(("DATABASE_URL", db.url.clone()));
    env.push(("COLONY_STORAGE_URL", "s3://no-such-bucket/media".to_owned()));
    let out = mothership(&["check"], &env);
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out);
    assert!(line.contains("bucket 'no-such-bucket' does not exist"), "{line}");
    assert!(!line.contains(&g.secret), "secret leaked");
}

#[test]
fn help_teaches_and_exits_0() {
    let out = mothership(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("migrate") && help.contains("check"), "{help}");
    let out = mothership(&["migrate", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("DATABASE_URL"), "{help}");
}

/// Defect: COLONY_HEARTBEAT_INTERVAL=0 panicked the observer and silently
/// killed a harvest cell's heartbeat. A zero interval is refused at parse
/// time, with one line and exit 2.
#[test]
fn a_zero_heartbeat_interval_or_lease_is_refused_with_one_line() {
    for (binary, var) in [
        ("observer-cell", "COLONY_HEARTBEAT_INTERVAL"),
        ("harvest-cell", "COLONY_HEARTBEAT_INTERVAL"),
        ("harvest-cell", "HARVEST_LEASE"),
    ] {
        let out = Command::new(bin(binary))
            .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
            .env("COLONY_STORAGE_URL", "file:///tmp/colony-unused")
            .env("OBSERVER_VOD_ID", "1")
            .env("OBSERVER_CHANNEL_ID", "1")
            .env("OBSERVER_CHANNEL_LOGIN", "x")
            .env("OBSERVER_CHANNEL_NAME", "x")
            .env("COLONY_CELL_ID", "00000000-0000-0000-0000-000000000001")
            .env("COLONY_LEASE_TOKEN", "1")
            .env(var, "0s")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{binary} {var}");
        let line = one_line(&out);
        assert!(line.contains(var) && line.contains("more than 0"), "{line}");
    }
}

/// Defect: a malformed COLONY_CELL_ENV entry was echoed in the error, and it
/// may hold a secret.
#[test]
fn a_malformed_cell_env_entry_is_refused_without_echoing_it() {
    let out = mothership(
        &["tick"],
        &[
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x".into()),
            ("COLONY_CELL_ENV", "DATABASE_URL postgres://colony:hunter2@db/colony".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out);
    assert!(line.contains("COLONY_CELL_ENV") && line.contains("KEY=VALUE"), "{line}");
    assert!(!line.contains("hunter2") && !line.contains("db/colony"), "the value was echoed: {line}");
}
