//! The `ecs` launcher against `moto_server` as the ECS endpoint: RunTask with
//! container overrides, startedBy and group; ListTasks + DescribeTasks; StopTask
//! with a reason; and `failures[]` in an "Ok" answer, injected by the test
//! proxy because moto never places a task badly.

use std::sync::atomic::Ordering;

use colony_planner::model::CellKind;
use colony_tests::mothership::Colony;
use colony_tests::moto::{self, Moto, Proxy};
use colony_tests::observer::Rig;
use mothership::launcher::ecs::{EcsArgs, EcsLauncher};
use mothership::launcher::{CellSpec, LaunchError, Launcher};
use uuid::Uuid;

fn args(endpoint: &str) -> EcsArgs {
    EcsArgs {
        ecs_cluster: "colony".into(),
        ecs_observer_task_definition: "colony-observer-cell".into(),
        ecs_harvest_task_definition: "colony-harvest-cell".into(),
        ecs_observer_container: "observer-cell".into(),
        ecs_harvest_container: "harvest-cell".into(),
        ecs_launch_type: "FARGATE".into(),
        // moto checks subnets against its own EC2; without them it runs Fargate tasks as is.
        ecs_subnets: vec![],
        ecs_security_groups: vec![],
        ecs_assign_public_ip: false,
        ecs_endpoint_url: Some(endpoint.into()),
        ecs_region: Some("us-east-1".into()),
        ecs_pass_secrets: false,
    }
}

fn observer_spec() -> CellSpec {
    let cell_id = Uuid::new_v4();
    CellSpec {
        cell_id,
        kind: CellKind::Observer,
        channel: Some("echo".into()),
        env: vec![
            ("COLONY_CELL_ID".into(), cell_id.to_string()),
            ("OBSERVER_RECORDING_ID".into(), "7".into()),
            ("OBSERVER_CHANNEL_LOGIN".into(), "echo".into()),
            ("COLONY_LEASE_TOKEN".into(), "3".into()),
            ("DATABASE_URL".into(), "postgres://colony:hunter2@db/colony".into()),
            ("AWS_ACCESS_KEY_ID".into(), "GKexample".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "sekrit-s3-key".into()),
        ],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_list_describe_and_stop_tasks_on_moto() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto).await;
    let client = moto::client(&proxy.endpoint);
    moto::setup(&client).await;
    let instance = Uuid::new_v4();
    let launcher = EcsLauncher::with_client(client.clone(), instance, args(&proxy.endpoint));

    let spec = observer_spec();
    let arn = launcher.start(&spec).await.unwrap();
    assert!(arn.starts_with("arn:aws:ecs:"), "{arn}");

    // Listed by startedBy, described with its cell id and kind.
    let listed = launcher.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].cell_id, listed[0].kind, listed[0].running),
        (Some(spec.cell_id), Some(CellKind::Observer), true)
    );
    let other = EcsLauncher::with_client(client.clone(), Uuid::new_v4(), args(&proxy.endpoint));
    assert!(other.list().await.unwrap().is_empty(), "another colony's tasks are not ours");

    let described = client.describe_tasks().cluster("colony").tasks(&arn).send().await.unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.started_by(), Some(launcher.started_by().as_str()));
    assert_eq!(task.group(), Some("colony:observer"));
    let overrides = &task.overrides().unwrap().container_overrides()[0];
    assert_eq!(overrides.name(), Some("observer-cell"));
    let env: Vec<(&str, &str)> =
        overrides.environment().iter().map(|kv| (kv.name().unwrap(), kv.value().unwrap())).collect();
    assert!(env.contains(&("OBSERVER_RECORDING_ID", "7")) && env.contains(&("COLONY_LEASE_TOKEN", "3")), "{env:?}");
    assert!(env.contains(&("COLONY_CELL_ID", spec.cell_id.to_string().as_str())));
    // No secret in the overrides (anyone allowed DescribeTasks reads them):
    // the task definition injects DATABASE_URL, and the task role gives AWS access.
    for secret in ["DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(!env.iter().any(|(k, _)| *k == secret), "{secret} in the overrides: {env:?}");
    }
    let shown = format!("{:?}", task.overrides());
    assert!(!shown.contains("hunter2") && !shown.contains("sekrit-s3-key"), "{shown}");

    launcher.stop(&arn, Some(spec.cell_id), "channel echo is disabled").await.unwrap();
    assert!(launcher.list().await.unwrap().is_empty(), "a stopped task is no longer listed");
    let described = client.describe_tasks().cluster("colony").tasks(&arn).send().await.unwrap();
    assert_eq!(described.tasks()[0].stopped_reason(), Some("channel echo is disabled"));

    // Asked to, for task definitions that inject nothing, it passes them.
    let secret =
        EcsLauncher::with_client(client.clone(), instance, EcsArgs { ecs_pass_secrets: true, ..args(&proxy.endpoint) });
    let arn = secret.start(&observer_spec()).await.unwrap();
    let described = client.describe_tasks().cluster("colony").tasks(&arn).send().await.unwrap();
    let overrides = &described.tasks()[0].overrides().unwrap().container_overrides()[0];
    let names: Vec<&str> = overrides.environment().iter().filter_map(|kv| kv.name()).collect();
    assert!(names.contains(&"DATABASE_URL") && names.contains(&"AWS_SECRET_ACCESS_KEY"), "{names:?}");
    secret.stop(&arn, None, "test done").await.unwrap();

    // An unknown task definition is a clear error, not a panic.
    let mut bad = args(&proxy.endpoint);
    bad.ecs_harvest_task_definition = "no-such-family".into();
    let bad = EcsLauncher::with_client(client, instance, bad);
    let spec = CellSpec { kind: CellKind::Harvest, channel: None, ..observer_spec() };
    let err = bad.start(&spec).await.unwrap_err();
    assert!(matches!(err, LaunchError::Backend { .. }), "{err:?}");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("run task no-such-family in cluster colony"), "{chain}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_in_an_ok_answer_are_errors_with_ecs_reasons() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto).await;
    moto::setup(&moto::client(&proxy.endpoint)).await;
    let launcher = EcsLauncher::with_client(moto::client(&proxy.endpoint), Uuid::new_v4(), args(&proxy.endpoint));
    let arn = launcher.start(&observer_spec()).await.expect("through the proxy, unarmed");

    proxy.inject_failures.store(true, Ordering::SeqCst);
    let err = launcher.start(&observer_spec()).await.unwrap_err().to_string();
    assert!(err.contains("RESOURCE:MEMORY") && err.contains("no capacity in the cluster"), "{err}");
    let err = launcher.list().await.unwrap_err().to_string();
    assert!(err.contains("could not describe tasks") && err.contains("RESOURCE:MEMORY"), "{err}");
    proxy.inject_failures.store(false, Ordering::SeqCst);
    assert_eq!(launcher.list().await.unwrap()[0].backend_ref, arn);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_with_the_ecs_launcher_starts_a_task_per_live_channel_and_then_holds() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto).await;
    moto::setup(&moto::client(&proxy.endpoint)).await;
    let colony = Colony::new(Rig::file().await);
    let source = colony_tests::live::LiveSource::start().await;
    let media = tokio::task::spawn_blocking(|| {
        colony_tests::live::media(colony_tests::live::Container::Ts, colony_tests::live::Profile::TEST)
    })
    .await
    .unwrap();
    source.add("echo", &media, 3);
    let out = colony.run(&["channel", "add", "--login", "echo", "--source-url", &source.media_url("echo")]).await;
    assert!(out.status.success());
    let tick = || async {
        let mut cmd = colony.command(&["tick", "--json", "--launcher", "ecs", "--ecs-endpoint-url", &proxy.endpoint]);
        for (k, v) in moto::ENV {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = tick().await;
    assert_eq!(first["observers_started"], 1, "{first:#}");
    let (_, arn, _) = colony.active("observer").await.pop().unwrap();
    assert!(arn.unwrap().starts_with("arn:aws:ecs:"));
    // moto runs nothing, so no heartbeat comes; inside the start grace the task
    // is listed and healthy, and the tick holds.
    let second = tick().await;
    assert_eq!(second["observers_started"], 0, "{second:#}");
    assert_eq!(second["orphans_reaped"], 0, "{second:#}");
    assert_eq!(second["backend_listed"], true);
}
