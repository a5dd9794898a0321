//! The implementation engine's sandbox: a warm pool of Python worker processes.
//!
//! Code is checked statically before it runs (imports against an allow-list,
//! no dunder walks, no eval/exec/open) and confined at run time twice over: in
//! Python (restricted builtins, sanitised modules) and by the kernel (a fresh
//! network namespace, rlimits on memory, files and processes, an unprivileged
//! user). Redis is reached only through the host, over the worker's pipe.

mod limits;
mod pool;
pub mod probe;
mod protocol;
mod worker;

pub use limits::SandboxLimits;
pub use pool::{CallFailure, CallOutcome, FailureKind, WorkerPool};
pub use protocol::CodeError;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// The worker program, embedded so the binary is self-contained: the static
/// check it shares with the operator, redis-py's command methods, the `redis`
/// module built on them, then the worker itself (its `main()` runs last). One
/// module at run time: the worker runs as `python3 -I -S -u worker.py` and
/// imports no sibling files.
fn worker_script() -> String {
    format!(
        "{}\n{}\n{}\n{}",
        eol_core::sandbox_check::SCRIPT,
        include_str!("redis_commands.py"),
        include_str!("redis_proxy.py"),
        include_str!("worker.py")
    )
}

/// Modules user code may import (the worker enforces the same list at run time).
pub use eol_core::sandbox_check::ALLOWED_MODULES as DEFAULT_ALLOWED_MODULES;

/// Runs the Redis commands sandboxed code asks for.
pub trait RedisBridge: Send + Sync {
    /// Executes one command (name first) and returns its reply as JSON, or
    /// why it was refused or failed.
    fn execute(
        &self,
        command: Vec<serde_json::Value>,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, BridgeError>> + Send + '_>>;

    /// Executes `commands` in one round trip (a MULTI/EXEC transaction when
    /// `transaction`): each command's reply or error, or why none ran.
    fn pipeline(
        &self,
        commands: Vec<Vec<serde_json::Value>>,
        transaction: bool,
    ) -> Pin<Box<dyn Future<Output = PipelineResult> + Send + '_>> {
        let _ = (commands, transaction);
        Box::pin(async {
            Err(BridgeError::refused(
                "Redis pipelines are not available here",
            ))
        })
    }
}

/// The replies of a pipeline, one per command, or why none ran.
pub type PipelineResult = Result<Vec<Result<serde_json::Value, BridgeError>>, BridgeError>;

/// Why a Redis command from sandboxed code got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    /// What kind of failure (it picks the Python exception class).
    pub kind: BridgeErrorKind,
    /// What to tell the code.
    pub message: String,
}

/// The kinds of [`BridgeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeErrorKind {
    /// The command is not allowed (not in the table, or a key outside the feature's).
    Refused,
    /// Redis answered with an error (WRONGTYPE, a syntax error, ...).
    Server,
    /// No Redis is configured or installed (the runner's setup, not the network).
    Unavailable,
    /// Redis could not be reached, or the connection broke.
    Connection,
    /// Redis did not answer in time.
    Timeout,
}

impl BridgeErrorKind {
    /// Its name in the worker protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeErrorKind::Refused => "refused",
            BridgeErrorKind::Server => "server",
            BridgeErrorKind::Unavailable => "unavailable",
            BridgeErrorKind::Connection => "connection",
            BridgeErrorKind::Timeout => "timeout",
        }
    }
}

impl BridgeError {
    /// A refusal saying `message`.
    pub fn refused(message: impl std::fmt::Display) -> Self {
        Self {
            kind: BridgeErrorKind::Refused,
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BridgeError {}

/// What can go wrong with the sandbox itself (not with the code it runs).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No usable Python interpreter.
    #[error("no usable Python: {0}")]
    Python(String),
    /// A worker could not be started.
    #[error("failed to start a sandbox worker: {0}")]
    Spawn(String),
    /// A worker stopped answering or exited.
    #[error("the sandbox worker died: {0}")]
    WorkerDied(String),
    /// A worker sent something unexpected.
    #[error("sandbox protocol error: {0}")]
    Protocol(String),
}

/// The Python interpreter workers run on, and whether they can drop to `nobody`.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// The interpreter's real path (not a version-manager shim).
    pub path: PathBuf,
    /// Its version, e.g. "3.11.2".
    pub version: String,
    /// Whether workers switch to the unprivileged `nobody` user.
    pub drop_to_nobody: bool,
}

impl Interpreter {
    /// Finds the interpreter: `configured` (or `python3` on PATH), resolved to its
    /// real executable. When running as root, workers drop to `nobody`, which
    /// needs an interpreter that user can reach; if the configured one cannot be
    /// (e.g. under a 0700 home directory), the system `/usr/bin/python3` is used.
    pub fn discover(configured: Option<&Path>) -> Result<Self, SandboxError> {
        let requested = configured.map_or_else(|| PathBuf::from("python3"), Path::to_path_buf);
        let (path, version) = probe(&requested)?;
        if limits::euid() != 0 {
            return Ok(Self {
                path,
                version,
                drop_to_nobody: false,
            });
        }
        if limits::world_accessible(&path) {
            return Ok(Self {
                path,
                version,
                drop_to_nobody: true,
            });
        }
        let system = Path::new("/usr/bin/python3");
        if let Ok((sys_path, sys_version)) = probe(system)
            && limits::world_accessible(&sys_path)
        {
            tracing::info!(configured = %path.display(), using = %sys_path.display(),
                "the configured Python is not reachable by the unprivileged sandbox user; using the system Python");
            return Ok(Self {
                path: sys_path,
                version: sys_version,
                drop_to_nobody: true,
            });
        }
        tracing::warn!(python = %path.display(), "sandbox workers run as root: no Python reachable by 'nobody' was found");
        Ok(Self {
            path,
            version,
            drop_to_nobody: false,
        })
    }
}

/// Asks `python` for its real executable path and version.
fn probe(python: &Path) -> Result<(PathBuf, String), SandboxError> {
    let out = std::process::Command::new(python)
        .args(["-I", "-S", "-c", "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .map_err(|e| SandboxError::Python(format!(
            "failed to run '{}' ({e}); install Python 3 (e.g. apt-get install python3) or set EOL_PYTHON",
            python.display()
        )))?;
    if !out.status.success() {
        return Err(SandboxError::Python(format!(
            "'{}' exited with {}",
            python.display(),
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let exe = lines.next().unwrap_or_default().trim();
    let version = lines.next().unwrap_or_default().trim().to_owned();
    if exe.is_empty() || !version.starts_with('3') {
        return Err(SandboxError::Python(format!(
            "'{}' is not Python 3",
            python.display()
        )));
    }
    let path = std::fs::canonicalize(exe).unwrap_or_else(|_| PathBuf::from(exe));
    Ok((path, version))
}
