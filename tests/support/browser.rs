//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol: just the calls the dashboard tests need (open a page, set a
//! cookie, evaluate JavaScript, take a screenshot). One browser per test,
//! with its own profile directory; it is killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proc::find_program;

pub struct Browser {
    child: tokio::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

/// The path of the browser, or None where it is not installed.
pub fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|n| find_program(n, &[]))
}

impl Browser {
    pub async fn start() -> Self {
        let exe = chromium().expect("chromium is not installed (apt-get install chromium); .ci/run installs it");
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromium");
        // Chromium writes the port it chose into the profile directory.
        let file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "chromium did not open its DevTools port");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Self { child, port, _profile: profile }
    }

    /// A new tab, showing about:blank.
    pub async fn tab(&self) -> Tab {
        let target: Value = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?about:blank", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ws = target["webSocketDebuggerUrl"].as_str().expect("a debugger URL").to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.expect("connecting to the tab");
        let mut tab = Tab { socket, next: 0 };
        tab.call("Page.enable", json!({})).await;
        tab.call("Runtime.enable", json!({})).await;
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub struct Tab {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Tab {
    /// One DevTools command and its result (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket.send(Message::text(message)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the tab closed")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"].as_u64() == Some(id) {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Record every Content-Security-Policy violation of the pages this tab
    /// opens from now on (read them with [`Tab::csp_violations`]).
    pub async fn watch_csp(&mut self) {
        let script = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                      e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));";
        self.call("Page.addScriptToEvaluateOnNewDocument", json!({ "source": script })).await;
    }

    /// The CSP violations of the page shown now.
    pub async fn csp_violations(&mut self) -> Vec<String> {
        let found = self.eval("window.__csp || ['the CSP watch was not installed']").await;
        serde_json::from_value(found).unwrap_or_default()
    }

    /// Set a cookie for `url`'s site.
    pub async fn cookie(&mut self, url: &str, name: &str, value: &str) {
        self.call("Network.enable", json!({})).await;
        self.call("Network.setCookie", json!({ "name": name, "value": value, "url": url })).await;
    }

    /// Open `url` and wait until its document has loaded.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let check = format!("document.readyState === 'complete' && location.href === {}", json!(url));
        while self.eval(&check).await != json!(true) {
            assert!(Instant::now() < deadline, "{url} did not load");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluate an expression (awaiting it if it is a promise); its value as JSON.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }))
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap()
    }
}
