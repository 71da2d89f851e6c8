//! The deployment files in `infra/` are valid.
//!
//! - The compose files render with their example env files, under every compose
//!   tool that is installed (`docker-compose` 1.29 and/or `docker compose` v2).
//! - The CloudFormation template passes `cfn-lint` with no error and no warning.
//! - The systemd units pass `systemd-analyze verify`, and the cron line is
//!   well formed.
//!
//! Only std, and nothing is started: these tests run the linters and read the
//! files. A missing linter is a failure that says how to install it, not a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn infra(rel: &str) -> PathBuf {
    repo().join("infra").join(rel)
}

fn read(rel: &str) -> String {
    let path = infra(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Run a command; `None` if its program is not installed.
fn run(cmd: &mut Command) -> Option<Output> {
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

fn works(program: &str, args: &[&str]) -> bool {
    run(Command::new(program).args(args)).is_some_and(|out| out.status.success())
}

fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Lines that are not blank and not `#` comments.
fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

/// The compose tools on this machine, as (program, leading args).
fn compose_tools() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut tools = Vec::new();
    if works("docker-compose", &["version"]) {
        tools.push(("docker-compose", vec![]));
    }
    if works("docker", &["compose", "version"]) {
        tools.push(("docker", vec!["compose"]));
    }
    assert!(
        !tools.is_empty(),
        "no compose tool found: neither `docker-compose` nor `docker compose` runs. \
         Install one (Debian: `apt-get install docker-compose`; or the Docker Compose v2 plugin, \
         `apt-get install docker-compose-plugin` from Docker's apt repository); CI installs it"
    );
    tools
}

#[test]
fn compose_files_render_with_their_example_env_files() {
    for (file, env_file) in [("compose.yaml", "compose.env.example"), ("compose.harvest.yaml", "harvest.env.example")] {
        for (program, lead) in compose_tools() {
            let mut cmd = Command::new(program);
            cmd.args(&lead)
                .arg("--env-file")
                .arg(infra(env_file))
                .arg("-f")
                .arg(infra(file))
                .args(["config", "-q"])
                .current_dir(infra(""));
            let out = run(&mut cmd).expect("the compose tool vanished");
            let tool = format!("{program} {}", lead.join(" ")).trim().to_owned();
            assert!(out.status.success(), "`{tool} config -q` rejects infra/{file}:\n{}", show(&out));
            // Every variable the file uses has a value (or a default) in the example.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("is not set"),
                "infra/{env_file} leaves variables of infra/{file} unset ({tool}):\n{stderr}"
            );
        }
    }
}

/// Only the mothership gets the Docker socket; a cell never does, and the
/// network the cells join is the compose network's fixed name.
#[test]
fn only_the_mothership_mounts_the_docker_socket_and_cells_join_the_named_network() {
    let compose = read("compose.yaml");
    let mut service = "";
    let mut mounts = Vec::new();
    for line in content_lines(&compose) {
        // Services sit two spaces in: `  name:`.
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            service = name;
        }
        // A bind mount `<host path>/docker.sock:<container path>`.
        if line.contains("docker.sock:") {
            mounts.push(service);
        }
    }
    assert_eq!(mounts, ["mothership"], "services of infra/compose.yaml that mount the Docker socket");
    let harvest = read("compose.harvest.yaml");
    assert!(!content_lines(&harvest).any(|l| l.contains("docker.sock:")), "compose.harvest.yaml mounts the socket");

    let value_of = |key: &str| {
        content_lines(&compose)
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.split('#').next().unwrap().trim().to_owned()))
            .unwrap_or_else(|| panic!("infra/compose.yaml has no `{key}`"))
    };
    assert_eq!(value_of("COLONY_DOCKER_NETWORK:"), value_of("name:"), "cells must join the compose network by name");
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let template = infra("aws/colony.yaml");
    let out = run(Command::new("cfn-lint").arg(&template).current_dir(repo())).unwrap_or_else(|| {
        panic!(
            "cfn-lint is not installed: `python3 -m pip install cfn-lint` \
             (add --break-system-packages on Debian's own python); CI installs it"
        )
    });
    assert!(out.status.success(), "cfn-lint finds problems in infra/aws/colony.yaml:\n{}", show(&out));
}

/// The ecs launcher puts the environment into the containers it names; the
/// task definitions must use those names.
#[test]
fn ecs_container_names_match_the_launcher_defaults() {
    let launcher = std::fs::read_to_string(repo().join("mothership/src/launcher/ecs.rs")).unwrap();
    let template = read("aws/colony.yaml");
    for (var, name) in
        [("COLONY_ECS_OBSERVER_CONTAINER", "observer-cell"), ("COLONY_ECS_HARVEST_CONTAINER", "harvest-cell")]
    {
        let arg = launcher.find(&format!(r#"env = "{var}""#)).unwrap_or_else(|| panic!("ecs.rs has no {var}"));
        let default = launcher[arg..].split(r#"default_value = ""#).nth(1).unwrap_or_default();
        assert!(
            default.starts_with(&format!(r#"{name}""#)),
            "the launcher's default for {var} is no longer `{name}`: update infra/aws/colony.yaml"
        );
        let lines: Vec<&str> = template.lines().map(str::trim).collect();
        assert!(lines.contains(&format!("- Name: {name}").as_str()), "colony.yaml has no container `{name}` ({var})");
        let set = lines.windows(2).any(|w| w[0] == format!("- Name: {var}") && w[1] == format!("Value: {name}"));
        assert!(set, "the mothership task definition does not set {var}={name}");
    }
}

#[test]
fn systemd_units_are_valid() {
    let service = read("systemd/colony-tick.service");
    let timer = read("systemd/colony-tick.timer");
    let has = |text: &str, line: &str| content_lines(text).any(|l| l.trim() == line);
    for line in ["[Unit]", "[Service]", "Type=oneshot", "ExecStart=/usr/local/bin/mothership tick", "KillMode=process"]
    {
        assert!(has(&service, line), "colony-tick.service lacks `{line}`");
    }
    assert!(
        content_lines(&service).any(|l| l.starts_with("EnvironmentFile=")),
        "colony-tick.service lacks EnvironmentFile="
    );
    let web = read("systemd/colony-web.service");
    for line in ["[Unit]", "[Service]", "Type=simple", "ExecStart=/usr/local/bin/mothership serve", "[Install]"] {
        assert!(has(&web, line), "colony-web.service lacks `{line}`");
    }
    for line in ["[Unit]", "[Timer]", "[Install]", "WantedBy=timers.target", "Unit=colony-tick.service"] {
        assert!(has(&timer, line), "colony-tick.timer lacks `{line}`");
    }
    assert!(
        content_lines(&timer).any(|l| l.starts_with("OnCalendar=") || l.starts_with("OnUnitActiveSec=")),
        "colony-tick.timer has no schedule"
    );

    let units =
        [infra("systemd/colony-tick.service"), infra("systemd/colony-tick.timer"), infra("systemd/colony-web.service")];
    let out = run(Command::new("systemd-analyze").arg("verify").args(&units)).unwrap_or_else(|| {
        panic!("systemd-analyze is not installed: `apt-get install systemd` (Debian); CI installs it")
    });
    // verify also checks that ExecStart's binary exists; on a machine without
    // an installed mothership that one complaint is expected, and only that one.
    let binary = "/usr/local/bin/mothership";
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (expected, other): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| !Path::new(binary).exists() && l.contains(&format!("Command {binary} is not executable")));
    assert!(other.is_empty(), "systemd-analyze verify complains about the units:\n{}", show(&out));
    assert!(out.status.success() || !expected.is_empty(), "systemd-analyze verify failed:\n{}", show(&out));
}

#[test]
fn cron_line_runs_one_tick_a_minute_with_the_colony_env() {
    let cron = read("cron/colony-tick");
    let jobs: Vec<&str> = content_lines(&cron).filter(|l| !l.contains('=') || l.contains("mothership")).collect();
    assert_eq!(jobs.len(), 1, "infra/cron/colony-tick should hold one job line: {jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    assert!(fields.len() > 6, "not `m h dom mon dow user command`: {}", jobs[0]);
    for field in &fields[..5] {
        assert!(field.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)), "bad time field `{field}`");
    }
    assert_eq!(fields[5], "colony", "the job's user");
    let command = fields[6..].join(" ");
    assert!(command.contains(". /etc/colony/colony.env") && command.contains("mothership tick"), "{command}");
    assert!(!command.contains('%'), "cron turns % into a newline: {command}");
}

/// `/etc/colony/colony.env` is read by systemd (EnvironmentFile=) and by sh:
/// plain KEY=VALUE lines only.
#[test]
fn host_env_file_is_plain_key_value() {
    for line in content_lines(&read("colony.env.example")) {
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        assert!(key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "bad name: {line}");
        assert!(!value.contains(|c: char| c.is_whitespace() || "\"'$`\\".contains(c)), "quote-free value: {line}");
    }
}
