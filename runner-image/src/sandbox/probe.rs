//! A corpus of hostile code with the refusal the sandbox owes each case, and
//! a probe that runs it: `eol sandbox-probe` runs it where the runner runs
//! (a serving pod under the restricted profile, through `kubectl exec`), so
//! the confinement is shown in place, not only on a developer's machine.
//!
//! The cases call the sandbox directly, past the static check that keeps
//! such code out of a Feature: the run-time guards and the kernel's limits
//! are what they meet.

use super::{BridgeError, FailureKind, RedisBridge, WorkerPool};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// One piece of hostile code and the failure it must end in.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// A short name, e.g. `import-os`.
    pub name: &'static str,
    /// Python defining `f()`.
    pub code: &'static str,
    /// The failure the sandbox must give.
    pub expect: FailureKind,
}

/// The corpus: imports, dunder and frame walks, dynamic code, file and
/// network access, fork, CPU, memory and wall-clock bombs.
pub const CORPUS: &[Case] = &[
    Case {
        name: "import-os",
        code: "import os\ndef f():\n    return os.fork()\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "import-subprocess",
        code: "import subprocess\ndef f():\n    return subprocess.run(['id']).returncode\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "fork-bomb",
        code: "import multiprocessing\ndef f():\n    while True:\n        multiprocessing.Process(target=f).start()\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "network-socket",
        code: "import socket\ndef f():\n    return str(socket.create_connection(('10.96.0.1', 443), 2))\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "network-http",
        code: "import urllib.request\ndef f():\n    return urllib.request.urlopen('http://10.96.0.1:443', timeout=2).status\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "read-file",
        code: "def f():\n    return open('/etc/passwd').read()\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "read-token",
        code: "import pathlib\ndef f():\n    return pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/token').read_text()\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "dunder-walk",
        code: "def f():\n    return [c.__name__ for c in ().__class__.__base__.__subclasses__()]\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "frame-walk",
        code: "def f():\n    return list((x for x in []).gi_frame.f_globals)\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "module-internals",
        code: "import random\ndef f():\n    return str(random._os)\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "exec",
        code: "def f():\n    return exec('import os')\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "dunder-import",
        code: "def f():\n    return str(__import__('os'))\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "ctypes",
        code: "import ctypes\ndef f():\n    return ctypes.CDLL(None).getpid()\n",
        expect: FailureKind::Forbidden,
    },
    Case {
        name: "built-name",
        code: "def f():\n    return str(getattr((), '__cl' + 'ass__'))\n",
        expect: FailureKind::Exception,
    },
    Case {
        name: "cpu-loop",
        code: "def f():\n    while True:\n        pass\n",
        expect: FailureKind::CpuLimit,
    },
    Case {
        name: "memory-bomb",
        code: "def f():\n    return len('a' * (10 ** 10))\n",
        expect: FailureKind::MemoryLimit,
    },
    Case {
        name: "memory-growth",
        code: "def f():\n    x = []\n    while True:\n        x.append(' ' * 10 ** 6)\n",
        expect: FailureKind::MemoryLimit,
    },
    Case {
        name: "sleep-past-the-wall-clock",
        code: "import time\ndef f():\n    time.sleep(3600)\n    return {}\n",
        expect: FailureKind::Timeout,
    },
];

/// What one case came to.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The case's name.
    pub case: &'static str,
    /// The failure it must end in.
    pub expected: &'static str,
    /// The failure it ended in, or `returned` when the code ran to the end.
    pub got: String,
    /// The sandbox's message (its first 200 characters).
    pub message: String,
    /// How long the call took, in milliseconds.
    pub millis: u128,
    /// Whether the sandbox held: the expected failure.
    pub held: bool,
}

/// What the probe found, over the whole corpus.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Each case.
    pub findings: Vec<Finding>,
    /// Whether the workers have a network namespace of their own.
    pub network_isolated: bool,
    /// Whether an ordinary call still answers after the corpus.
    pub recovered: bool,
}

impl Report {
    /// Every case held and the pool still answers.
    pub fn held(&self) -> bool {
        self.recovered && self.findings.iter().all(|f| f.held)
    }
}

/// Code of the probe reaches no Redis: every command is refused.
struct NoRedis;

impl RedisBridge for NoRedis {
    fn execute(
        &self,
        command: Vec<serde_json::Value>,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, BridgeError>> + Send + '_>> {
        let name = command.first().cloned().unwrap_or_default();
        Box::pin(async move {
            Err(BridgeError::refused(format!(
                "the sandbox probe reaches no Redis (asked for {name})"
            )))
        })
    }
}

/// Runs every case of [`CORPUS`] on `pool`, then an ordinary call.
pub async fn probe(pool: &WorkerPool) -> Report {
    let mut findings = Vec::with_capacity(CORPUS.len());
    for case in CORPUS {
        let started = Instant::now();
        let result = pool
            .call(case.code, "f", &serde_json::json!({}), &NoRedis)
            .await;
        let (got, message) = match result {
            Ok(outcome) => ("returned".to_owned(), outcome.value.to_string()),
            Err(failure) => (failure.kind.as_str().to_owned(), failure.message),
        };
        findings.push(Finding {
            case: case.name,
            expected: case.expect.as_str(),
            held: got == case.expect.as_str(),
            got,
            message: message.chars().take(200).collect(),
            millis: started.elapsed().as_millis(),
        });
    }
    let recovered = pool
        .call(
            "def f():\n    return {'fine': True}\n",
            "f",
            &serde_json::json!({}),
            &NoRedis,
        )
        .await
        .is_ok_and(|o| o.value == serde_json::json!({"fine": true}));
    Report {
        findings,
        network_isolated: pool.network_isolated(),
        recovered,
    }
}
