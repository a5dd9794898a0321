//! Headless Chromium (Debian's `chromium-headless-shell`), driven over the
//! Chrome DevTools Protocol: open a page, evaluate JavaScript in it, take
//! screenshots. Just the three commands the dashboard test needs, over one
//! page's WebSocket.

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The browser binary: `EOL_CHROMIUM`, else Debian's headless shell.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("EOL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium-headless-shell"));
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs it (apt-get install chromium-headless-shell), \
         or set EOL_CHROMIUM to a headless Chromium",
        path.display()
    );
    path
}

/// Where tests keep screenshots: `EOL_ARTIFACTS`, else `~/.cache/eol/artifacts`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let root = std::env::var_os("EOL_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/eol/artifacts")
        });
    let dir = root.join(test);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A running headless browser with one page.
pub struct Browser {
    child: tokio::process::Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    /// Starts the browser with a fresh profile and a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let profile = std::env::temp_dir().join(format!("eol-chromium-{}", rand::random::<u32>()));
        let mut child = tokio::process::Command::new(binary())
            .args([
                "--headless",
                // As root (CI), Chromium refuses its own sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--hide-scrollbars",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A group of its own: Debian's command is a shell script whose
            // child is the browser, which starts more processes; all of them
            // are stopped together.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary().display()));
        // It prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`.
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("Chromium did not open its DevTools port: {seen:?}"));
        // Keep draining its log, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let targets: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .and_then(|r| r.error_for_status())
            .expect("the DevTools target list")
            .json()
            .await
            .expect("targets as JSON");
        let url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets:?}"))
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("connecting to the page at {url}: {e}"));
        Self {
            child,
            page,
            next_id: 0,
            profile,
        }
    }

    /// Sends CDP command `method` and returns its result (events are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::text(request.to_string()))
            .await
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.page.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 60 s"))
                .unwrap_or_else(|| panic!("{method}: the browser closed the connection"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("CDP sends JSON");
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("{method} failed: {error}");
            }
            return reply["result"].clone();
        }
    }

    /// Opens `url` in the page.
    pub async fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(error) = result.get("errorText") {
            panic!("opening {url} failed: {error}");
        }
    }

    /// The value of JavaScript `expression` in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (within `timeout`) and returns
    /// it; panics naming `what`, with `explain`'s value, otherwise.
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        explain: &str,
        timeout: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if start.elapsed() > timeout {
                let seen = self.eval(explain).await;
                panic!("{what}: not seen within {timeout:?}; the page shows: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a PNG of the whole page to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let result = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: a plain syscall; the group is the browser's own (`process_group(0)`).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_browser_leaves_no_process_behind() {
        let mut browser = Browser::start(800, 600).await;
        browser.navigate("data:text/html,<p id=x>hello</p>").await;
        let text = browser
            .wait_for(
                "the page",
                "document.getElementById('x')?.textContent",
                "document.body.innerHTML",
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(text, "hello");
        let group = libc::pid_t::try_from(browser.child.id().expect("running")).unwrap();
        drop(browser);
        let start = Instant::now();
        // SAFETY: signal 0 only asks whether the group has any process left.
        while unsafe { libc::killpg(group, 0) } == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the browser's processes outlived it (group {group})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
