//! The dashboard in tests: `mothership serve` on a free loopback port, and
//! the check that a page's player plays.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

use crate::browser::Tab;
use crate::mothership::Colony;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Start `mothership serve` on a free loopback port; returns it and its base URL.
pub async fn serve(colony: &Colony, token: Option<&str>, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = colony.command(&["serve", "--bind", "127.0.0.1:0", "--metrics-cache", "0s"]);
    // The dashboard connects as its own role.
    cmd.env("COLONY_WEB_DATABASE_URL", colony.rig.db.role_url(crate::pg::Role::Web));
    cmd.envs(env.iter().copied());
    if let Some(t) = token {
        cmd.env("COLONY_WEB_TOKEN", t);
    }
    let mut child = cmd.stderr(Stdio::inherit()).kill_on_drop(true).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(SECS(20), lines.next_line()).await.expect("serve printed nothing").unwrap();
    let line = line.expect("serve exited at once");
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL").trim_end_matches('/');
    (child, url.to_owned())
}

/// Sign in at `base`'s `/login` with `token`, as a browser does; the
/// session cookie's value it set.
pub async fn session(base: &str, token: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "signing in failed");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("colony_session="))
        .unwrap_or_else(|| panic!("no session cookie: {cookie}"))
        .to_owned()
}

/// Sign the tab in at `base` with `token`, and watch its pages' CSP.
pub async fn sign_in(tab: &mut Tab, base: &str, token: &str) {
    let value = session(base, token).await;
    tab.cookie(base, "colony_session", &value).await;
    tab.watch_csp().await;
}

/// The page's player starts and its clock moves.
pub async fn plays(tab: &mut Tab, what: &str) {
    let deadline = std::time::Instant::now() + SECS(30);
    loop {
        let state = tab
            .eval(
                "(() => { const v = document.getElementById('player');
                   return { t: v.currentTime, error: v.error && v.error.message, ready: v.readyState }; })()",
            )
            .await;
        assert!(state["error"].is_null(), "{what}: the player failed: {state}");
        if state["t"].as_f64().is_some_and(|t| t > 1.5) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: video.currentTime did not advance: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
