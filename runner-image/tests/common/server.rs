//! `eol serve` as a child process, for the tests that call it over HTTP.

use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running `eol serve`, stopped when dropped.
pub struct Server {
    /// The process.
    pub child: tokio::process::Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Server {
    /// SIGTERM first, so `eol serve` shuts down and stops the local Redis it
    /// started (a SIGKILL would leave that redis-server running); SIGKILL after 5 s.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

/// `eol serve` of `file` in `dir`, with no Redis or model configured.
pub async fn start(dir: &std::path::Path, file: &str) -> Server {
    start_with(dir, file, &[], Stdio::null()).await
}

/// `eol serve` with `env` set and its stdout going to `stdout`.
pub async fn start_with(
    dir: &std::path::Path,
    file: &str,
    env: &[(&str, &str)],
    stdout: Stdio,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["serve", file, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("REDIS_URL")
        .env_remove("EOL_LLM_BASE_URL")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(stdout)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{}/healthz", server.url))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "eol serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// The first `count` audit records on the server's `stdout`, one JSON line per call.
pub async fn audit_records(stdout: tokio::process::ChildStdout, count: usize) -> Vec<Value> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut records = Vec::new();
    while records.len() < count {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an audit record per call")
            .unwrap()
            .expect("stdout open");
        records.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    records
}

/// The server's `/metrics` text.
pub async fn metrics(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/readyz` once the tests are no longer running (or after 30 s).
pub async fn wait_ready(server: &Server) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(format!("{}/readyz", server.url))
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if !body.contains("tests are running") || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JSON call of `op`: the status and the JSON answer.
pub async fn post(server: &Server, op: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/operations/{op}", server.url))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
