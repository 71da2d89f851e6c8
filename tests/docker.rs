//! The `docker` launcher against the real engine on this machine, with cell
//! images built locally (no registry). Cells use the host network, so they
//! reach the test Postgres, Garage and live source on loopback.

use std::process::Command;
use std::time::Duration;

use colony_tests::docker::test_image;
use colony_tests::garage::garage;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// This test is about observers; the finalize's thumbnails job must not start a pool.
const NO_POOL: &[(&str, &str)] = &[("COLONY_MAX_HARVEST", "0")];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Containers of one colony: (id, state).
fn containers(instance: &str) -> Vec<(String, String)> {
    docker(&["ps", "-a", "--filter", &format!("label=colony.instance={instance}"), "--format", "{{.ID}} {{.State}}"])
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
}

fn remove_all(instance: &str) {
    for (id, _) in containers(instance) {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

async fn docker_tick(colony: &Colony, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = colony.command(&["tick", "--json", "--launcher", "docker", "--docker-network", "host"]);
    cmd.env("COLONY_DOCKER_OBSERVER_IMAGE", test_image("observer-cell"))
        .env("COLONY_DOCKER_HARVEST_IMAGE", test_image("harvest-cell"))
        .env("COLONY_DOCKER_STOP_TIMEOUT", "20");
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 4: the plan was carried out but some actions failed.
    let none_failed = stdout.contains("\"failed_actions\":0");
    let expected = if none_failed { Some(0) } else { Some(4) };
    assert_eq!(out.status.code(), expected, "tick: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_cells_record_with_the_env_contract_and_labels_then_stop_and_are_reaped() {
    let colony = Colony::new(Rig::garage(garage()).await);
    let instance = mothership::observe::instance_id(&colony.rig.pool).await.unwrap().to_string();
    let source = LiveSource::start().await;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    source.add("delta", &media, 4);
    let out = colony.run(&["channel", "add", "--login", "delta", "--source-url", &source.media_url("delta")]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let first = docker_tick(&colony, NO_POOL).await;
    assert_eq!(n(&first, "observers_started"), 1, "{first:#}");
    let (cell, container, _) = colony.active("observer").await.pop().unwrap();
    let container = container.expect("the container id is recorded");

    // Labels, the env contract, and one mount: the colony's spool volume (no
    // Docker socket, no host path).
    let labels: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", "--format", "{{json .Config.Labels}}", &container])).unwrap();
    assert_eq!(labels["colony.cell.kind"], "observer");
    assert_eq!(labels["colony.cell.id"], cell.to_string());
    assert_eq!(labels["colony.channel"], "delta");
    assert_eq!(labels["colony.instance"], instance);
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &container]);
    for var in [
        "OBSERVER_RECORDING_ID=",
        "OBSERVER_CHANNEL_ID=",
        "OBSERVER_CHANNEL_LOGIN=delta",
        "OBSERVER_CHANNEL_NAME=delta",
        "COLONY_LEASE_TOKEN=",
        &format!("COLONY_CELL_ID={cell}"),
        "DATABASE_URL=",
        "COLONY_STORAGE_URL=s3://",
    ] {
        assert!(env.contains(var), "{var} missing from {env}");
    }
    let mounts: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", "--format", "{{json .Mounts}}", &container])).unwrap();
    let mounts = mounts.as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], format!("colony-spool-{instance}"));
    assert_eq!(mounts[0]["Destination"], "/var/lib/colony/spool");
    assert!(env.contains("COLONY_SPOOL_DIR=/var/lib/colony/spool"), "{env}");
    // The cell connects as its role, and gets nothing of the mothership's own.
    assert!(env.contains("DATABASE_URL=postgres://colony_test_observer@"), "{env}");
    for own in ["COLONY_LAUNCHER", "COLONY_WEB_TOKEN", "COLONY_TWITCH_", "COLONY_OBSERVER_DATABASE_URL", "HOME=/root"] {
        assert!(!env.contains(own), "{own} reached the cell: {env}");
    }
    // Defect: cells ran with Docker's default capabilities and no limits.
    let host: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", "--format", "{{json .HostConfig}}", &container])).unwrap();
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{host}");
    assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges:true"]), "{host}");
    assert_eq!(host["Memory"], 1024_i64 * 1024 * 1024, "{host}");
    assert_eq!(host["PidsLimit"], 1024, "{host}");

    // It really records.
    let recording: i64 = sqlx::query_scalar("SELECT recording_id FROM cells WHERE id = $1")
        .bind(cell)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    colony.rig.wait_segments(recording, 3, SECS(60)).await;

    // A hand-made container with this colony's labels but no cell: an orphan.
    let orphan = docker(&[
        "run",
        "-d",
        "--label",
        &format!("colony.instance={instance}"),
        "--label",
        "colony.cell.kind=harvest",
        "--label",
        &format!("colony.cell.id={}", uuid::Uuid::new_v4()),
        "--entrypoint",
        "/bin/sleep",
        &test_image("harvest-cell"),
        "300",
    ]);

    // Disabling the channel stops the observer: SIGTERM, and it finalizes.
    assert!(colony.run(&["channel", "disable", "delta"]).await.status.success());
    let stopping = docker_tick(&colony, NO_POOL).await;
    assert_eq!(n(&stopping, "observers_stopped"), 1, "{stopping:#}");
    assert_eq!(n(&stopping, "orphans_reaped"), 1, "{stopping:#}");
    assert!(!containers(&instance).iter().any(|(id, _)| orphan.starts_with(id.as_str())), "the orphan is gone");
    // Stopped mid-broadcast: finalized, as interrupted rather than complete.
    colony_tests::eventually("the recording to be finalized", SECS(60), || async {
        (colony.rig.recording_state(recording).await == "interrupted").then_some(())
    })
    .await;
    colony_tests::eventually("the container to exit", SECS(30), || async {
        containers(&instance).iter().all(|(_, state)| state == "exited").then_some(())
    })
    .await;
    // What is left of a finished cell is removed by the next tick.
    let cleaned = docker_tick(&colony, NO_POOL).await;
    assert_eq!(n(&cleaned, "orphans_reaped"), 1, "{cleaned:#}");
    assert!(containers(&instance).is_empty());
    remove_all(&instance);
    let _ = Command::new("docker").args(["volume", "rm", "-f", &format!("colony-spool-{instance}")]).output();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_a_failed_action_with_a_clear_reason_and_the_rest_goes_on() {
    let colony = Colony::new(Rig::file().await);
    let instance = mothership::observe::instance_id(&colony.rig.pool).await.unwrap().to_string();
    for i in 0..4 {
        let out = colony.run(&["job", "enqueue", "thumbnails", "--args", &format!("{{\"recording_id\": {i}}}")]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Two harvest cells wanted (4 ready at 2 per cell): both launches fail, each on its own record.
    let report = docker_tick(&colony, &[("COLONY_DOCKER_HARVEST_IMAGE", "colony-missing:nope")]).await;
    assert_eq!(n(&report, "harvest_wanted"), 2, "{report:#}");
    assert_eq!(n(&report, "failed_actions"), 2, "{report:#}");
    let action = &report["actions"][0];
    assert_eq!(action["outcome"], "failed");
    let error = action["error"].as_str().unwrap();
    assert!(error.contains("image 'colony-missing:nope' is not on the Docker host"), "{error}");
    let (state, detail): (String, serde_json::Value) =
        sqlx::query_as("SELECT state::text, detail FROM cells WHERE kind = 'harvest' LIMIT 1")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(state, "dead");
    assert!(detail["launch_error"].as_str().unwrap().contains("never pulls"));
    let failed = colony.run(&["decisions", "--failed", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(containers(&instance).is_empty(), "nothing half-made is left behind");

    // The failed starts back off (COLONY_START_BACKOFF, 1s here, doubling): the
    // next tick waits and says until when.
    let waiting = docker_tick(&colony, &[]).await;
    assert_eq!(n(&waiting, "harvest_started"), 0, "{waiting:#}");
    let skipped = waiting["plan"]["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(skipped.contains("backing off after 2 failed start(s); next try at"), "{waiting:#}");
    // With the image present, a tick after the backoff starts the cells, which drain and exit.
    tokio::time::sleep(SECS(3)).await;
    let report = docker_tick(&colony, &[]).await;
    assert_eq!(n(&report, "harvest_started"), 2, "{report:#}");
    colony_tests::eventually("the harvest container to finish", SECS(60), || async {
        (colony.active_count().await == 0).then_some(())
    })
    .await;
    remove_all(&instance);
}
