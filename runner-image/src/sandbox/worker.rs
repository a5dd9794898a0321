//! One Python worker process and the conversation with it.

use super::limits::{Confinement, confine};
use super::protocol::{CallResult, CodeError, Reply, Request};
use super::{BridgeError, RedisBridge, SandboxError};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A running worker, ready for requests.
pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Its private working directory, removed when the worker is dropped.
    _dir: tempfile::TempDir,
    next_id: u64,
    /// Whether the worker got a network namespace of its own.
    pub network_isolated: bool,
}

impl Worker {
    /// Starts a worker and waits for its `ready` line.
    pub(crate) async fn spawn(
        python: &Path,
        script: &Path,
        config: &Value,
        confinement: Confinement,
    ) -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("eol-worker-")
            .tempdir()
            .map_err(|e| {
                SandboxError::Spawn(format!("failed to create a worker directory: {e}"))
            })?;
        if confinement.drop_to_nobody {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(
                dir.path(),
                Some(super::limits::NOBODY),
                Some(super::limits::NOBODY),
            )
            .and_then(|()| {
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| {
                SandboxError::Spawn(format!("failed to prepare the worker directory: {e}"))
            })?;
        }
        let mut cmd = Command::new(python);
        // -I: ignore environment and user site; -S: no site import (faster start).
        cmd.arg("-I")
            .arg("-S")
            .arg("-u")
            .arg(script)
            .arg(config.to_string())
            .current_dir(dir.path())
            .env_clear()
            .env("TMPDIR", dir.path())
            .env("HOME", dir.path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: `confine` only makes async-signal-safe syscalls on copied plain data.
        unsafe {
            cmd.pre_exec(move || confine(confinement));
        }
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::Spawn(format!("failed to start {}: {e}", python.display()))
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SandboxError::Spawn("worker pipes were not created".into()));
        };
        let network_isolated = match child.id() {
            Some(pid) => {
                let ours = std::fs::read_link("/proc/self/ns/net").ok();
                let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
                ours.is_some() && theirs.is_some() && ours != theirs
            }
            None => false,
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            _dir: dir,
            next_id: 0,
            network_isolated,
        };
        let ready = tokio::time::timeout(std::time::Duration::from_secs(10), worker.read()).await;
        match ready {
            Ok(Ok(Reply::Ready {})) => Ok(worker),
            Ok(Ok(other)) => Err(SandboxError::Protocol(format!(
                "expected 'ready' from a new worker, got {other:?}"
            ))),
            Ok(Err(e)) => {
                let status = worker.child.try_wait().ok().flatten();
                Err(SandboxError::Spawn(format!(
                    "the Python worker did not start ({e}){}",
                    status
                        .map(|s| format!("; it exited with {s}"))
                        .unwrap_or_default()
                )))
            }
            Err(_) => Err(SandboxError::Spawn(
                "the Python worker did not become ready within 10 s".into(),
            )),
        }
    }

    async fn send(&mut self, request: &Request<'_>) -> Result<(), SandboxError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| SandboxError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .map_err(|e| SandboxError::WorkerDied(format!("failed to write to the worker: {e}")))
    }

    async fn read(&mut self) -> Result<Reply, SandboxError> {
        match self.stdout.next_line().await {
            Ok(Some(line)) => serde_json::from_str(&line).map_err(|e| {
                SandboxError::Protocol(format!("unreadable worker message ({e}): {line:.200}"))
            }),
            Ok(None) => Err(SandboxError::WorkerDied("the worker exited".into())),
            Err(e) => Err(SandboxError::WorkerDied(format!(
                "failed to read from the worker: {e}"
            ))),
        }
    }

    /// Round trip with no work: proves the worker is alive.
    pub(crate) async fn ping(&mut self) -> Result<(), SandboxError> {
        self.send(&Request::Ping).await?;
        match self.read().await? {
            Reply::Pong => Ok(()),
            other => Err(SandboxError::Protocol(format!(
                "expected 'pong', got {other:?}"
            ))),
        }
    }

    /// Static checks of `code`: syntax, imports, forbidden names, the function's signature.
    pub(crate) async fn check(
        &mut self,
        code: &str,
        function: &str,
        params: &[String],
    ) -> Result<Vec<CodeError>, SandboxError> {
        self.send(&Request::Check {
            code,
            function,
            params,
        })
        .await?;
        match self.read().await? {
            Reply::Checked { errors } => Ok(errors),
            other => Err(SandboxError::Protocol(format!(
                "expected 'checked', got {other:?}"
            ))),
        }
    }

    /// Runs `function(**args)` from `code`, serving its Redis commands through `redis`.
    pub(crate) async fn call(
        &mut self,
        code: &str,
        function: &str,
        args: &Value,
        cpu_seconds: f64,
        redis: &dyn RedisBridge,
    ) -> Result<CallResult, SandboxError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&Request::Call {
            id,
            code,
            function,
            args,
            cpu_seconds,
        })
        .await?;
        loop {
            match self.read().await? {
                Reply::Result(result) if result.id == id => return Ok(result),
                Reply::Result(result) => {
                    return Err(SandboxError::Protocol(format!(
                        "result for call {} while waiting for call {id}",
                        result.id
                    )));
                }
                Reply::Redis { command } => {
                    let reply = match redis.execute(command).await {
                        Ok(value) => redis_value(value),
                        Err(error) => redis_error(error),
                    };
                    self.send(&reply).await?;
                }
                Reply::RedisPipeline {
                    commands,
                    transaction,
                } => {
                    let reply = match redis.pipeline(commands, transaction).await {
                        Ok(items) => redis_value(Value::Array(
                            items
                                .into_iter()
                                .map(|item| match item {
                                    Ok(value) => serde_json::json!({"ok": true, "value": value}),
                                    Err(e) => serde_json::json!({
                                        "ok": false, "error": e.message, "kind": e.kind.as_str()
                                    }),
                                })
                                .collect(),
                        )),
                        Err(error) => redis_error(error),
                    };
                    self.send(&reply).await?;
                }
                other => {
                    return Err(SandboxError::Protocol(format!(
                        "unexpected worker message during a call: {other:?}"
                    )));
                }
            }
        }
    }

    /// The worker's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process now (used when a call overruns its wall-clock limit).
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn redis_value(value: Value) -> Request<'static> {
    Request::RedisReply {
        ok: true,
        value: Some(value),
        error: None,
        kind: None,
    }
}

fn redis_error(error: BridgeError) -> Request<'static> {
    Request::RedisReply {
        ok: false,
        value: None,
        error: Some(error.message),
        kind: Some(error.kind.as_str()),
    }
}
