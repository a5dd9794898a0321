//! A warm pool of sandbox workers.

use super::limits::Confinement;
use super::protocol::CodeError;
use super::worker::Worker;
use super::{
    DEFAULT_ALLOWED_MODULES, Interpreter, RedisBridge, SandboxError, SandboxLimits, worker_script,
};
use eol_core::process::otel::{OtelSpan, Parent};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Why a sandboxed call failed. Each kind has a stable label for metrics and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The code does not parse.
    Syntax,
    /// The code uses something the sandbox forbids.
    Forbidden,
    /// The code raised an exception.
    Exception,
    /// The call used more CPU time than allowed.
    CpuLimit,
    /// The call needed more memory than allowed.
    MemoryLimit,
    /// The call ran past its wall-clock limit; its worker was killed.
    Timeout,
    /// The function returned something that is not JSON.
    BadOutput,
    /// The worker died or misbehaved.
    WorkerLost,
}

impl FailureKind {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Syntax => "syntax",
            FailureKind::Forbidden => "forbidden",
            FailureKind::Exception => "exception",
            FailureKind::CpuLimit => "cpu_limit",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Timeout => "timeout",
            FailureKind::BadOutput => "bad_output",
            FailureKind::WorkerLost => "worker_lost",
        }
    }

    fn from_worker(kind: &str) -> Self {
        match kind {
            "syntax" => FailureKind::Syntax,
            "forbidden" => FailureKind::Forbidden,
            "cpu_limit" => FailureKind::CpuLimit,
            "memory_limit" => FailureKind::MemoryLimit,
            "bad_output" => FailureKind::BadOutput,
            _ => FailureKind::Exception,
        }
    }
}

/// A failed call.
#[derive(Debug, Clone)]
pub struct CallFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, for people.
    pub message: String,
    /// The line inside the code, when the failure has one.
    pub line: Option<usize>,
    /// The code's part of the traceback, for exceptions.
    pub traceback: Option<String>,
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// What the function returned.
    pub value: Value,
    /// What it printed.
    pub stdout: String,
    /// Wall-clock time of the call, round trip included.
    pub duration: Duration,
}

/// A pool of warm Python workers; calls wait for a free one.
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Vec<Worker>>,
    permits: Semaphore,
    size: usize,
    interpreter: Interpreter,
    limits: SandboxLimits,
    config: Value,
    /// Holds the worker script; removed with the pool.
    script_dir: tempfile::TempDir,
    network_isolated: bool,
}

impl Inner {
    fn script(&self) -> PathBuf {
        self.script_dir.path().join("worker.py")
    }

    fn confinement(&self) -> Confinement {
        Confinement {
            memory_bytes: self.limits.memory_bytes,
            file_size_bytes: self.limits.file_size_bytes,
            open_files: self.limits.open_files,
            drop_to_nobody: self.interpreter.drop_to_nobody,
        }
    }

    async fn spawn(&self) -> Result<Worker, SandboxError> {
        Worker::spawn(
            &self.interpreter.path,
            &self.script(),
            &self.config,
            self.confinement(),
        )
        .await
    }

    fn put_back(&self, worker: Worker) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.size
        {
            idle.push(worker);
        }
    }

    fn take(&self) -> Option<Worker> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("size", &self.inner.size)
            .field("python", &self.inner.interpreter.path)
            .finish()
    }
}

impl WorkerPool {
    /// Starts `size` warm workers on `interpreter`.
    pub async fn start(
        interpreter: Interpreter,
        limits: SandboxLimits,
        size: usize,
    ) -> Result<Self, SandboxError> {
        let size = size.max(1);
        let script_dir = tempfile::Builder::new()
            .prefix("eol-sandbox-")
            .tempdir()
            .map_err(|e| {
                SandboxError::Spawn(format!("failed to create the sandbox directory: {e}"))
            })?;
        write_script(script_dir.path())?;
        let config = json!({ "allowed_modules": DEFAULT_ALLOWED_MODULES, "cpu_seconds": limits.cpu_seconds });
        let mut inner = Inner {
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            size,
            interpreter,
            limits,
            config,
            script_dir,
            network_isolated: false,
        };
        let first = inner.spawn().await?;
        inner.network_isolated = first.network_isolated;
        let inner = Arc::new(inner);
        inner.put_back(first);
        // Start the rest concurrently: each waits on its own interpreter start-up.
        let rest: Vec<_> = (1..size)
            .map(|_| {
                let inner = inner.clone();
                tokio::spawn(async move { inner.spawn().await })
            })
            .collect();
        for handle in rest {
            let worker = handle
                .await
                .map_err(|e| SandboxError::Spawn(format!("worker start-up task failed: {e}")))??;
            inner.put_back(worker);
        }
        Ok(Self { inner })
    }

    /// How many workers run at most.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The interpreter the workers run on.
    pub fn interpreter(&self) -> &Interpreter {
        &self.inner.interpreter
    }

    /// Whether workers run in a network namespace of their own.
    pub fn network_isolated(&self) -> bool {
        self.inner.network_isolated
    }

    /// Process ids of the idle workers (for diagnostics).
    pub fn idle_worker_pids(&self) -> Vec<u32> {
        self.inner
            .idle
            .lock()
            .map(|idle| idle.iter().filter_map(Worker::pid).collect())
            .unwrap_or_default()
    }

    async fn acquire(&self) -> Result<(tokio::sync::SemaphorePermit<'_>, Worker), SandboxError> {
        let permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| SandboxError::WorkerDied("the pool is shut down".into()))?;
        let worker = match self.inner.take() {
            Some(w) => w,
            None => self.inner.spawn().await?,
        };
        Ok((permit, worker))
    }

    /// Replaces a lost worker in the background, so the pool stays warm.
    fn replenish(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match inner.spawn().await {
                Ok(w) => inner.put_back(w),
                Err(error) => tracing::warn!(%error, "failed to replace a sandbox worker"),
            }
        });
    }

    /// Static checks of `code` (syntax, imports, forbidden names, the function's signature).
    pub async fn check(
        &self,
        code: &str,
        function: &str,
        params: &[String],
    ) -> Result<Vec<CodeError>, SandboxError> {
        let (_permit, mut worker) = self.acquire().await?;
        match worker.check(code, function, params).await {
            Ok(errors) => {
                self.inner.put_back(worker);
                Ok(errors)
            }
            Err(e) => {
                self.replenish();
                Err(e)
            }
        }
    }

    /// A no-op round trip through a worker (for benchmarks and health checks).
    pub async fn ping(&self) -> Result<(), SandboxError> {
        let (_permit, mut worker) = self.acquire().await?;
        worker.ping().await?;
        self.inner.put_back(worker);
        Ok(())
    }

    /// Runs `function(**args)` from `code` in a worker, in a `sandbox.execute`
    /// span that names the failure kind when it fails.
    ///
    /// A call that overruns the wall-clock limit kills its worker, which is replaced.
    pub async fn call(
        &self,
        code: &str,
        function: &str,
        args: &Value,
        redis: &dyn RedisBridge,
    ) -> Result<CallOutcome, CallFailure> {
        let span = OtelSpan::start(Parent::Current, || {
            SpanBuilder::from_name("sandbox.execute")
                .with_attributes([KeyValue::new("eol.operation", function.to_owned())])
        });
        let result = span
            .instrument(self.call_untraced(code, function, args, redis))
            .await;
        if let Err(failure) = &result {
            span.record_error(failure.kind.as_str(), &failure.message);
        }
        result
    }

    async fn call_untraced(
        &self,
        code: &str,
        function: &str,
        args: &Value,
        redis: &dyn RedisBridge,
    ) -> Result<CallOutcome, CallFailure> {
        let started = Instant::now();
        let lost = |e: SandboxError| CallFailure {
            kind: FailureKind::WorkerLost,
            message: e.to_string(),
            line: None,
            traceback: None,
        };
        let (_permit, mut worker) = self.acquire().await.map_err(lost)?;
        let limits = &self.inner.limits;
        let redis = Watched::new(redis);
        let outcome = tokio::time::timeout(
            limits.wall_timeout,
            worker.call(code, function, args, limits.cpu_seconds, &redis),
        )
        .await;
        match outcome {
            Err(_elapsed) => {
                worker.kill().await;
                self.replenish();
                // Out of time while Redis did not answer: that is the cause to name.
                let waiting = redis
                    .pending_for()
                    .map(|d| {
                        format!(
                            " while a Redis command had waited {:.1} s for an answer (is the feature's Redis reachable?)",
                            d.as_secs_f64()
                        )
                    })
                    .unwrap_or_default();
                Err(CallFailure {
                    kind: FailureKind::Timeout,
                    message: format!(
                        "the call ran longer than the {:.1} s wall-clock limit{waiting}; its worker was killed",
                        limits.wall_timeout.as_secs_f64()
                    ),
                    line: None,
                    traceback: None,
                })
            }
            Ok(Err(e)) => {
                // A worker that broke protocol or died is not trusted again.
                worker.kill().await;
                self.replenish();
                Err(lost(e))
            }
            Ok(Ok(result)) => {
                if result.recycle {
                    worker.kill().await;
                    self.replenish();
                } else {
                    self.inner.put_back(worker);
                }
                if result.ok {
                    Ok(CallOutcome {
                        value: result.value,
                        stdout: result.stdout,
                        duration: started.elapsed(),
                    })
                } else {
                    let error = result
                        .error
                        .unwrap_or_else(|| super::protocol::WorkerError {
                            kind: "exception".into(),
                            message: "the call failed without saying why".into(),
                            line: None,
                            traceback: None,
                        });
                    Err(CallFailure {
                        kind: FailureKind::from_worker(&error.kind),
                        message: error.message,
                        line: error.line,
                        traceback: error.traceback,
                    })
                }
            }
        }
    }
}

fn write_script(dir: &std::path::Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("worker.py");
    // Readable by the unprivileged worker user, writable by no one but us.
    std::fs::write(&path, worker_script())
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)))
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| SandboxError::Spawn(format!("failed to write the worker script: {e}")))
}

/// The bridge as one call sees it, noting when a Redis command is pending, so
/// a call that runs out of time while Redis does not answer says so.
struct Watched<'a> {
    inner: &'a dyn RedisBridge,
    pending_since: Mutex<Option<Instant>>,
}

impl<'a> Watched<'a> {
    fn new(inner: &'a dyn RedisBridge) -> Self {
        Self {
            inner,
            pending_since: Mutex::new(None),
        }
    }

    fn mark(&self, pending: bool) {
        if let Ok(mut since) = self.pending_since.lock() {
            *since = pending.then(Instant::now);
        }
    }

    /// How long the command still pending has waited, if one is.
    fn pending_for(&self) -> Option<Duration> {
        self.pending_since.lock().ok()?.map(|since| since.elapsed())
    }
}

impl RedisBridge for Watched<'_> {
    fn execute(
        &self,
        command: Vec<Value>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Value, super::BridgeError>> + Send + '_>,
    > {
        Box::pin(async move {
            self.mark(true);
            let reply = self.inner.execute(command).await;
            self.mark(false);
            reply
        })
    }

    fn pipeline(
        &self,
        commands: Vec<Vec<Value>>,
        transaction: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = super::PipelineResult> + Send + '_>>
    {
        Box::pin(async move {
            self.mark(true);
            let replies = self.inner.pipeline(commands, transaction).await;
            self.mark(false);
            replies
        })
    }
}
