//! The schema: migrations on an empty database, a second migrate as a no-op,
//! and binaries refusing a database whose schema is missing, older or newer.

use std::process::{Command, Output};

use colony_tests::bins::bin;
use colony_tests::pg::TestDb;

const TABLES: &[&str] = &["channels", "recordings", "segments", "cells", "jobs", "decisions", "colony", "ticks"];

fn run(name: &str, args: &[&str], db: &TestDb) -> Output {
    let storage = tempfile::tempdir().unwrap();
    Command::new(bin(name))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("COLONY_STORAGE_URL", format!("file://{}", storage.path().display()))
        .env("COLONY_LOG", "warn")
        .env("OBSERVER_VOD_ID", "1")
        .env("OBSERVER_CHANNEL_ID", "1")
        .env("OBSERVER_CHANNEL_LOGIN", "schema-test")
        .env("OBSERVER_CHANNEL_NAME", "Schema Test")
        .env("COLONY_CELL_ID", "00000000-0000-0000-0000-000000000001")
        .env("COLONY_LEASE_TOKEN", "1")
        .output()
        .unwrap()
}

fn stderr_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "expected one line on stderr, got:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test]
async fn migrate_builds_every_table_on_an_empty_database_and_is_a_no_op_the_second_time() {
    let db = TestDb::empty().await;
    let first = run("mothership", &["migrate"], &db);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    let migrations = colony::db::MIGRATOR.iter().count();
    assert!(stdout.contains(&format!("applied {migrations} migration(s)")), "{stdout}");

    let pool = db.pool(2).await;
    for table in TABLES {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(&pool).await.unwrap();
        assert!(exists, "table {table} missing after migrate");
    }
    let status = colony::db::schema_status(&pool).await.unwrap();
    assert_eq!(status.database, Some(colony::db::binary_version()));
    assert!(status.pending.is_empty());

    let second = run("mothership", &["migrate"], &db);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to do"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    assert_eq!(rows as usize, migrations);

    // The library agrees: nothing pending.
    let report = colony::db::migrate(&pool).await.unwrap();
    assert!(report.applied.is_empty());
}

#[tokio::test]
async fn every_binary_refuses_an_unmigrated_database() {
    let db = TestDb::empty().await;
    for (name, args) in [("mothership", &["check"][..]), ("observer-cell", &[][..]), ("harvest-cell", &[][..])] {
        let out = run(name, args, &db);
        assert_eq!(out.status.code(), Some(2), "{name} exit code");
        let line = stderr_line(&out);
        assert!(line.starts_with(&format!("{name}: error: ")), "{line}");
        assert!(line.contains("no colony schema") && line.contains("mothership migrate"), "{line}");
    }
    // And it wrote nothing.
    let pool = db.pool(1).await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn binaries_refuse_a_newer_schema_and_migrate_does_not_touch_it() {
    let db = TestDb::migrated().await;
    let pool = db.pool(1).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (name, args) in [("mothership", &["check"][..]), ("mothership", &["migrate"][..]), ("harvest-cell", &[][..])] {
        let out = run(name, args, &db);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}");
        let line = stderr_line(&out);
        assert!(line.contains("version 99999") && line.contains("upgrade"), "{line}");
    }
}

#[tokio::test]
async fn binaries_refuse_an_older_schema() {
    let db = TestDb::migrated().await;
    let pool = db.pool(1).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&pool)
        .await
        .unwrap();
    let out = run("observer-cell", &[], &db);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("older than this binary"));
}

#[tokio::test]
async fn check_passes_on_a_migrated_database() {
    let db = TestDb::migrated().await;
    let out = run("mothership", &["check"], &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("storage:") && stdout.contains("writable"), "{stdout}");
}

/// Every pool a binary opens carries a statement timeout, so a statement
/// that hangs (a lock never released, a runaway query) is cancelled by
/// Postgres instead of holding the binary forever; `migrate` runs without it.
#[tokio::test]
async fn statements_of_a_binarys_pool_time_out_and_migrate_has_no_limit() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        db: colony::config::DatabaseArgs,
    }
    let db = TestDb::migrated().await;
    let cli = Cli::parse_from(["test", "--database-url", &db.url, "--statement-timeout", "300ms"]);
    let pool = colony::db::connect(&cli.db).await.unwrap();
    let err = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await.unwrap_err();
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "{err}");
    let unlimited = colony::db::connect_unchecked(&cli.db).await.unwrap();
    sqlx::query("SELECT pg_sleep(0.5)").execute(&unlimited).await.unwrap();
}

/// Issue 22: channels and queued downloads stored resolver commands. The
/// migration that makes rows name profiles turns each command into the name
/// of the profile this host holds for it, and refuses, saying what to
/// define (with option values hidden), while any command has none.
#[tokio::test]
async fn migrating_to_profiles_names_what_the_host_holds_and_refuses_the_rest() {
    let db = TestDb::empty().await;
    let pool = db.pool(2).await;
    // The schema as it was before resolver profiles.
    let before = sqlx::migrate::Migrator {
        migrations: colony::db::MIGRATOR.iter().filter(|m| m.version <= 20).cloned().collect::<Vec<_>>().into(),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO channels (login, display_name, source_kind, source_url, resolver, platform, platform_handle)
         VALUES ('twitchy', 'twitchy', 'platform', 'https://www.twitch.tv/twitchy', 'streamlink --stream-url {url} best', 'twitch', 'twitchy'),
                ('custom', 'custom', 'command', 'https://example.com/show', 'yt-dlp --add-headers ''Cookie: s3cr3t'' -g {url}', NULL, NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (kind, args) VALUES
           ('vod_download', '{\"url\": \"https://www.twitch.tv/videos/1\", \"channel_id\": 1, \"resolver\": \"yt-dlp --get-url --format best {url}\"}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let migrate = |extra: &[(&str, &str)]| {
        let storage = tempfile::tempdir().unwrap();
        Command::new(bin("mothership"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("COLONY_STORAGE_URL", format!("file://{}", storage.path().display()))
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    };
    let refused = migrate(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("COLONY_RESOLVER_CUSTOM1='yt-dlp --add-headers *** -g {url}'"), "{stderr}");
    assert!(stderr.contains("used by channel custom") && !stderr.contains("s3cr3t"), "{stderr}");
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    assert_eq!(version, 20, "nothing was migrated");
    let untouched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM channels WHERE resolver LIKE '% %'").fetch_one(&pool).await.unwrap();
    assert_eq!(untouched, 2, "a refused migration rewrites no row");

    let template = "yt-dlp --add-headers 'Cookie: s3cr3t' -g {url}";
    let done = migrate(&[("COLONY_RESOLVER_MYCDN", template)]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let profiles: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT login, resolver_profile FROM channels ORDER BY login").fetch_all(&pool).await.unwrap();
    assert_eq!(profiles, [("custom".into(), Some("mycdn".into())), ("twitchy".into(), Some("twitch".into()))]);
    let job: String = sqlx::query_scalar("SELECT args ->> 'resolver' FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(job, "twitch_vod", "the queued download names the platform's VOD profile");
}
