//! `moto_server` (PyPI `moto[server]`) as the ECS endpoint: a private server
//! per test on a free loopback port, killed on drop, and a loopback proxy in
//! front of it. The proxy mends one moto bug (it answers a task's container
//! `cpu` and `memory` as numbers where ECS sends strings, which the SDK
//! rightly refuses) and, when asked, injects `failures[]` into Ok answers.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};

use crate::proc::{free_port, port_open};

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is not installed: pip install 'moto[server]' (the CI script does)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(port) {
            assert!(Instant::now() < deadline, "moto_server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { endpoint: format!("http://127.0.0.1:{port}"), child }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The credentials and region every ECS test uses (moto accepts anything).
pub const ENV: &[(&str, &str)] =
    &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("COLONY_ECS_REGION", "us-east-1")];

pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// A cluster and the two task definitions the launcher names by default.
pub async fn setup(client: &Client) {
    use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode};
    client.create_cluster().cluster_name("colony").send().await.unwrap();
    for (family, container) in [("colony-observer-cell", "observer-cell"), ("colony-harvest-cell", "harvest-cell")] {
        client
            .register_task_definition()
            .family(family)
            // awsvpc would need subnets in moto's own EC2; the launcher's network
            // configuration is covered by its flags, not by this fake.
            .network_mode(NetworkMode::Bridge)
            .cpu("256")
            .memory("512")
            .container_definitions(
                ContainerDefinition::builder()
                    .name(container)
                    .image(format!("colony-{container}:latest"))
                    .essential(true)
                    // Not `memory`/`cpu`: moto echoes those as numbers where ECS
                    // sends strings, and the SDK rightly refuses them.
                    .memory_reservation(512)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

pub struct Proxy {
    pub endpoint: String,
    /// While set, every answer with a `failures` list reports a task that
    /// could not be placed (and no tasks).
    pub inject_failures: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(moto: &Moto) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let inject = Arc::new(AtomicBool::new(false));
        let (http, upstream, armed) = (reqwest::Client::new(), moto.endpoint.clone(), inject.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (http, upstream, armed) = (http.clone(), upstream.clone(), armed.clone());
            async move {
                let mut req = http.post(&upstream).body(body);
                for (k, v) in headers.iter().filter(|(k, _)| *k != "host" && *k != "content-length") {
                    req = req.header(k.as_str(), v.as_bytes());
                }
                let resp = req.send().await.unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let mut json: serde_json::Value =
                    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
                mend_numbers(&mut json);
                if armed.load(Ordering::SeqCst) && json.get("failures").is_some() {
                    json["failures"] = serde_json::json!([{
                        "arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/colony/abc",
                        "reason": "RESOURCE:MEMORY",
                        "detail": "no capacity in the cluster"
                    }]);
                    if json.get("tasks").is_some() {
                        json["tasks"] = serde_json::json!([]);
                    }
                }
                (status, [("content-type", "application/x-amz-json-1.1")], json.to_string())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint: format!("http://{addr}"), inject_failures: inject }
    }
}

/// `tasks[].containers[].cpu|memory` as strings, as ECS sends them.
fn mend_numbers(json: &mut serde_json::Value) {
    let mut tasks: Vec<&mut serde_json::Value> = Vec::new();
    if let Some(obj) = json.as_object_mut() {
        for (key, value) in obj.iter_mut() {
            match (key.as_str(), value) {
                ("tasks", serde_json::Value::Array(list)) => tasks.extend(list.iter_mut()),
                ("task", task) => tasks.push(task),
                _ => {}
            }
        }
    }
    for task in tasks {
        for container in task.get_mut("containers").and_then(|c| c.as_array_mut()).into_iter().flatten() {
            for key in ["cpu", "memory"] {
                if let Some(n) = container.get(key).filter(|v| v.is_number()).map(|v| v.to_string()) {
                    container[key] = serde_json::Value::String(n);
                }
            }
        }
    }
}
