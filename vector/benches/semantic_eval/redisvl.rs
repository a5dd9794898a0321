//! RedisVL's `SemanticCache`, the bench's reference, run by the Python of
//! `scripts/redisvl-env.sh` (`vector/eval/redisvl/semantic_eval.py`) and
//! driven over a line protocol: one JSON command a line, one JSON reply.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

use crate::eval_data::repo;

/// The Python side: RedisVL's `SemanticCache` behind a line protocol.
pub(crate) struct RedisVl {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl RedisVl {
    pub(crate) fn start() -> Self {
        let python = std::env::var("EOL_REDISVL_PYTHON").unwrap_or_else(|_| {
            let out = Command::new("bash")
                .arg(repo().join("scripts/redisvl-env.sh"))
                .arg("python")
                .output()
                .expect("run scripts/redisvl-env.sh python");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        });
        assert!(
            Path::new(&python).exists(),
            "{python} is missing: run scripts/redisvl-env.sh install"
        );
        let mut child = Command::new(&python)
            .arg(repo().join("vector/eval/redisvl/semantic_eval.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the RedisVL side");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").expect("write to the RedisVL side");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the RedisVL side");
        let reply: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("RedisVL side: {e}: {line:?} (see its stderr above)"));
        assert!(reply.get("error").is_none(), "RedisVL side: {reply}");
        reply
    }
}

impl Drop for RedisVl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
