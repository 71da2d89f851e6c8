//! The `ecs` launcher (aws-sdk-ecs): one task per cell.
//!
//! RunTask names the kind's task definition and puts the env contract in
//! `containerOverrides`; every task gets `startedBy = colony-<instance>` (how
//! ListTasks finds this colony's tasks), `group = colony:<kind>`, and tags
//! for the cell. ECS answers "Ok" with a `failures[]` list when it could not
//! place a task, so every response's failures are checked.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, Failure, KeyValuePair, LaunchType,
    NetworkConfiguration, Tag, Task, TaskField, TaskOverride,
};
use uuid::Uuid;

use super::{
    CellSpec, LABEL_CELL, LABEL_CHANNEL, LABEL_INSTANCE, LABEL_KIND, LaunchError, Launcher, instance_from_labels,
};
use colony_planner::model::{CellKind, Instance};

#[derive(Debug, Clone, clap::Args)]
pub struct EcsArgs {
    /// The ECS cluster cells run in.
    #[arg(long, env = "COLONY_ECS_CLUSTER", default_value = "colony", value_name = "CLUSTER")]
    pub ecs_cluster: String,
    /// Task definition (family or family:revision or ARN) for observer cells.
    #[arg(
        long,
        env = "COLONY_ECS_OBSERVER_TASK_DEFINITION",
        default_value = "colony-observer-cell",
        value_name = "TASKDEF"
    )]
    pub ecs_observer_task_definition: String,
    /// Task definition for harvest cells.
    #[arg(
        long,
        env = "COLONY_ECS_HARVEST_TASK_DEFINITION",
        default_value = "colony-harvest-cell",
        value_name = "TASKDEF"
    )]
    pub ecs_harvest_task_definition: String,
    /// The container, inside the observer task definition, that gets the environment.
    #[arg(long, env = "COLONY_ECS_OBSERVER_CONTAINER", default_value = "observer-cell", value_name = "NAME")]
    pub ecs_observer_container: String,
    /// The container, inside the harvest task definition, that gets the environment.
    #[arg(long, env = "COLONY_ECS_HARVEST_CONTAINER", default_value = "harvest-cell", value_name = "NAME")]
    pub ecs_harvest_container: String,
    /// FARGATE, EC2 or EXTERNAL.
    #[arg(long, env = "COLONY_ECS_LAUNCH_TYPE", default_value = "FARGATE", value_name = "TYPE",
          value_parser = ["FARGATE", "EC2", "EXTERNAL"])]
    pub ecs_launch_type: String,
    /// Subnets for awsvpc networking, comma-separated (required by Fargate).
    #[arg(long, env = "COLONY_ECS_SUBNETS", value_delimiter = ',', value_name = "IDS")]
    pub ecs_subnets: Vec<String>,
    /// Security groups for awsvpc networking, comma-separated.
    #[arg(long, env = "COLONY_ECS_SECURITY_GROUPS", value_delimiter = ',', value_name = "IDS")]
    pub ecs_security_groups: Vec<String>,
    /// Give tasks a public IP (Fargate in a public subnet without a NAT).
    #[arg(long, env = "COLONY_ECS_ASSIGN_PUBLIC_IP", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub ecs_assign_public_ip: bool,
    /// The ECS API endpoint, for a test double such as moto (AWS itself needs none;
    /// AWS_ENDPOINT_URL_ECS works too).
    #[arg(long, env = "COLONY_ECS_ENDPOINT_URL", value_name = "URL")]
    pub ecs_endpoint_url: Option<String>,
    /// The ECS region. Default: the SDK's usual chain (AWS_REGION, profile).
    #[arg(long, env = "COLONY_ECS_REGION", value_name = "REGION")]
    pub ecs_region: Option<String>,
    /// Send secrets (DATABASE_URL and AWS keys) to cells in the RunTask
    /// overrides, where anyone allowed DescribeTasks can read them. Off by
    /// default: the cell task definitions inject DATABASE_URL from Secrets
    /// Manager or SSM, and the tasks use their task role (infra/aws does both).
    #[arg(long, env = "COLONY_ECS_PASS_SECRETS", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub ecs_pass_secrets: bool,
}

/// Variables that hold secrets: never in RunTask overrides unless asked.
pub const SECRETS: &[&str] = &["DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

pub struct EcsLauncher {
    client: Client,
    instance: Uuid,
    args: EcsArgs,
}

/// SDK errors print as "service error" alone: say what ECS answered instead
/// (its error code and message), or why no answer came.
fn ecs_error<E, R>(what: impl Into<String>, e: aws_sdk_ecs::error::SdkError<E, R>) -> LaunchError
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let detail = match e.as_service_error().and_then(|se| Some((se.code()?, se.message().unwrap_or("no message")))) {
        Some((code, message)) => format!("{code}: {message}"),
        None => aws_sdk_ecs::error::DisplayErrorContext(&e).to_string(),
    };
    LaunchError::backend("ecs", what, detail)
}

fn describe_failures(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.arn().unwrap_or("?"),
                f.reason().unwrap_or("no reason given"),
                f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl EcsLauncher {
    pub async fn connect(instance: Uuid, args: EcsArgs) -> Result<Self, LaunchError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &args.ecs_region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_ecs::config::Builder::from(&shared);
        if let Some(endpoint) = &args.ecs_endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        if shared.region().is_none() && args.ecs_region.is_none() {
            return Err(LaunchError::Refused(
                "no region for ECS: set --ecs-region (COLONY_ECS_REGION) or AWS_REGION".into(),
            ));
        }
        Ok(Self { client: Client::from_conf(config.build()), instance, args })
    }

    /// A launcher over a client built elsewhere (tests give it static credentials).
    pub fn with_client(client: Client, instance: Uuid, args: EcsArgs) -> Self {
        Self { client, instance, args }
    }

    /// The `startedBy` value of this colony's tasks (ECS allows 36 characters).
    pub fn started_by(&self) -> String {
        format!("colony-{}", &self.instance.simple().to_string()[..12])
    }

    fn task_of(&self, task: &Task) -> Instance {
        let tags: Vec<(&str, &str)> = task.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
        let env: Vec<(&str, &str)> = task
            .overrides()
            .map(|o| o.container_overrides())
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.environment())
            .filter_map(|kv| Some((kv.name()?, kv.value()?)))
            .collect();
        let running = task.last_status() != Some("STOPPED") && task.desired_status() != Some("STOPPED");
        instance_from_labels(task.task_arn().unwrap_or_default().to_owned(), running, |label| {
            let from_tag = tags.iter().find(|(k, _)| *k == label).map(|(_, v)| v.to_string());
            from_tag.or_else(|| match label {
                LABEL_CELL => env.iter().find(|(k, _)| *k == "COLONY_CELL_ID").map(|(_, v)| v.to_string()),
                LABEL_KIND => task.group().and_then(|g| g.strip_prefix("colony:")).map(str::to_owned),
                _ => None,
            })
        })
    }
}

#[async_trait::async_trait]
impl Launcher for EcsLauncher {
    fn backend(&self) -> &'static str {
        "ecs"
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let mut arns: Vec<String> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_tasks()
                .cluster(&self.args.ecs_cluster)
                .started_by(self.started_by())
                .desired_status(DesiredStatus::Running)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| ecs_error(format!("list tasks in cluster {}", self.args.ecs_cluster), e))?;
            arns.extend(page.task_arns().iter().cloned());
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        let mut found = Vec::with_capacity(arns.len());
        for batch in arns.chunks(100) {
            let described = self
                .client
                .describe_tasks()
                .cluster(&self.args.ecs_cluster)
                .set_tasks(Some(batch.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| ecs_error("describe tasks", e))?;
            // A task that ended between the two calls is MISSING: nothing to report.
            let failures: Vec<Failure> =
                described.failures().iter().filter(|f| f.reason() != Some("MISSING")).cloned().collect();
            if !failures.is_empty() {
                return Err(LaunchError::Refused(format!(
                    "ECS could not describe tasks: {}",
                    describe_failures(&failures)
                )));
            }
            found.extend(described.tasks().iter().map(|t| self.task_of(t)));
        }
        Ok(found)
    }

    async fn start(&self, spec: &CellSpec) -> Result<String, LaunchError> {
        let (task_definition, container) = match spec.kind {
            CellKind::Observer => (&self.args.ecs_observer_task_definition, &self.args.ecs_observer_container),
            CellKind::Harvest => (&self.args.ecs_harvest_task_definition, &self.args.ecs_harvest_container),
        };
        let env: Vec<KeyValuePair> = spec
            .env
            .iter()
            .filter(|(k, _)| self.args.ecs_pass_secrets || !SECRETS.contains(&k.as_str()))
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        let overrides = TaskOverride::builder()
            .container_overrides(ContainerOverride::builder().name(container).set_environment(Some(env)).build())
            .build();
        let mut tags = vec![
            Tag::builder().key(LABEL_INSTANCE).value(self.instance.to_string()).build(),
            Tag::builder().key(LABEL_KIND).value(spec.kind.as_str()).build(),
            Tag::builder().key(LABEL_CELL).value(spec.cell_id.to_string()).build(),
        ];
        if let Some(channel) = &spec.channel {
            tags.push(Tag::builder().key(LABEL_CHANNEL).value(channel).build());
        }
        let mut request = self
            .client
            .run_task()
            .cluster(&self.args.ecs_cluster)
            .task_definition(task_definition)
            .count(1)
            .launch_type(LaunchType::from(self.args.ecs_launch_type.as_str()))
            .started_by(self.started_by())
            .group(format!("colony:{}", spec.kind.as_str()))
            .overrides(overrides)
            .set_tags(Some(tags));
        if !self.args.ecs_subnets.is_empty() {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(self.args.ecs_subnets.clone()))
                .set_security_groups(Some(self.args.ecs_security_groups.clone()).filter(|g| !g.is_empty()))
                .assign_public_ip(if self.args.ecs_assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build()
                .map_err(|e| LaunchError::backend("ecs", "build the network configuration", e))?;
            request = request.network_configuration(NetworkConfiguration::builder().awsvpc_configuration(vpc).build());
        }
        let out = request
            .send()
            .await
            .map_err(|e| ecs_error(format!("run task {task_definition} in cluster {}", self.args.ecs_cluster), e))?;
        if !out.failures().is_empty() {
            return Err(LaunchError::Refused(format!(
                "ECS did not start {task_definition}: {}",
                describe_failures(out.failures())
            )));
        }
        match out.tasks().first().and_then(|t| t.task_arn()) {
            Some(arn) => Ok(arn.to_owned()),
            None => Err(LaunchError::Refused(format!(
                "ECS placed no task for {task_definition} in cluster {} and gave no reason",
                self.args.ecs_cluster
            ))),
        }
    }

    fn lists_at_once(&self) -> bool {
        false
    }

    async fn stop(&self, backend_ref: &str, _cell: Option<Uuid>, reason: &str) -> Result<(), LaunchError> {
        // ECS keeps at most 255 characters of a reason.
        let reason: String = reason.chars().take(255).collect();
        self.client
            .stop_task()
            .cluster(&self.args.ecs_cluster)
            .task(backend_ref)
            .reason(reason)
            .send()
            .await
            .map_err(|e| ecs_error(format!("stop task {backend_ref}"), e))?;
        Ok(())
    }
}
