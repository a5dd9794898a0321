//! The static check of a Feature's Python, before anything is created: the
//! same check `eol check` and the sandbox run (`eol_core::sandbox_check`),
//! with the same Python, as a short-lived `python3 -I -S -c` process that
//! parses and compiles the code but never runs it. Results are remembered by
//! content, so an unchanged Feature is not checked again on every reconcile.

use super::{Prepared, SpecProblem, reason};
use eol_core::sandbox_check::{self, CheckItem, CheckReply, CheckRequest, CodeProblem};
use eol_core::{Diagnostic, Diagnostics};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one check may take: parsing even a large feature takes milliseconds.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Checked functions remembered; the memory is emptied when full.
const REMEMBERED: usize = 4096;

/// What the check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every operation's code passes (or there is none).
    Passed,
    /// Some code does not: `CodeInvalid`, each problem located in the source.
    Failed(SpecProblem),
    /// The check could not run (why): the pods check again before running code.
    Unchecked(String),
}

/// Runs the static check, remembering results by the code's content.
#[derive(Debug)]
pub struct CodeCheck {
    python: PathBuf,
    remembered: Mutex<HashMap<[u8; 32], Vec<CodeProblem>>>,
}

impl CodeCheck {
    /// A check that runs `python` (a Python 3 interpreter).
    pub fn new(python: impl Into<PathBuf>) -> Self {
        Self {
            python: python.into(),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// Checks every operation's code of `prepared`.
    pub async fn check(&self, prepared: &Prepared) -> Verdict {
        if prepared.code.is_empty() {
            return Verdict::Passed;
        }
        let keys: Vec<[u8; 32]> = prepared.code.iter().map(key).collect();
        let known: Vec<Option<Vec<CodeProblem>>> = {
            let memory = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| memory.get(k).cloned()).collect()
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| known[i].is_none()).collect();
        let mut found = known;
        if !missing.is_empty() {
            let items = missing
                .iter()
                .map(|&i| {
                    let c = &prepared.code[i];
                    CheckItem {
                        code: &c.source,
                        function: &c.operation,
                        params: &c.params,
                    }
                })
                .collect();
            let results = match self.run(items).await {
                Ok(results) if results.len() == missing.len() => results,
                Ok(results) => {
                    return Verdict::Unchecked(format!(
                        "the check answered {} results for {} functions",
                        results.len(),
                        missing.len()
                    ));
                }
                Err(why) => return Verdict::Unchecked(why),
            };
            let mut memory = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
            if memory.len() + results.len() > REMEMBERED {
                memory.clear();
            }
            for (&i, problems) in missing.iter().zip(results) {
                memory.insert(keys[i], problems.clone());
                found[i] = Some(problems);
            }
        }
        let diagnostics: Vec<Diagnostic> = prepared
            .code
            .iter()
            .zip(found)
            .flat_map(|(c, problems)| {
                problems
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.locate(&prepared.file, &c.operation, c.first_line))
            })
            .collect();
        if diagnostics.is_empty() {
            Verdict::Passed
        } else {
            Verdict::Failed(SpecProblem {
                reason: reason::CODE_INVALID,
                message: Diagnostics(diagnostics).to_string(),
            })
        }
    }

    /// Runs one batch through the interpreter.
    async fn run(&self, items: Vec<CheckItem<'_>>) -> Result<Vec<Vec<CodeProblem>>, String> {
        let request = serde_json::to_vec(&CheckRequest {
            allowed_modules: sandbox_check::ALLOWED_MODULES,
            items,
        })
        .map_err(|e| format!("failed to encode the check request: {e}"))?;
        let python = self.python.display().to_string();
        let mut child = tokio::process::Command::new(&self.python)
            .args(["-I", "-S", "-c", &sandbox_check::batch_program()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("failed to start {python} for the static check of the Python code: {e}")
            })?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let output = tokio::time::timeout(CHECK_TIMEOUT, async move {
            stdin.write_all(&request).await?;
            drop(stdin);
            child.wait_with_output().await
        })
        .await
        .map_err(|_| {
            format!(
                "the static check did not finish within {}s",
                CHECK_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("failed to run {python} for the static check: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "the static check ({python}) exited with {}: {}",
                output.status,
                stderr.trim().lines().last().unwrap_or_default()
            ));
        }
        serde_json::from_slice::<CheckReply>(&output.stdout)
            .map(|r| r.results)
            .map_err(|e| format!("the static check ({python}) answered something unexpected: {e}"))
    }
}

/// The memory key of one function: its code, name and parameters.
fn key(code: &super::OperationCode) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [code.source.as_str(), code.operation.as_str()]
        .into_iter()
        .chain(code.params.iter().map(String::as_str))
    {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::OperationCode;

    fn prepared(code: &str) -> Prepared {
        Prepared {
            name: "f".to_owned(),
            source: String::new(),
            tests: None,
            phase: eol_core::Phase::Implementation,
            operation_phases: Default::default(),
            needs_model: false,
            documents: Default::default(),
            resources: None,
            placement: Default::default(),
            config_hash: "0123456789".into(),
            file: "Feature shop/f spec.source.inline".into(),
            code: vec![OperationCode {
                operation: "level".into(),
                source: code.into(),
                params: vec!["sku".into()],
                first_line: 20,
            }],
        }
    }

    #[tokio::test]
    async fn problems_are_located_in_the_source_and_remembered() {
        let check = CodeCheck::new("python3");
        let bad = prepared("def level(sku):\n    return eval(sku)\n");
        let Verdict::Failed(problem) = check.check(&bad).await else {
            panic!("eval passed the check");
        };
        assert_eq!(problem.reason, reason::CODE_INVALID);
        assert!(
            problem.message.starts_with(
                "Feature shop/f spec.source.inline:21:12: operation 'level': use of 'eval' is not allowed"
            ),
            "{}",
            problem.message
        );
        assert_eq!(check.remembered.lock().expect("lock").len(), 1);
        // Known code is not checked again: a missing interpreter is never asked.
        let check = CodeCheck {
            python: "/nonexistent/python3".into(),
            remembered: Mutex::new(std::mem::take(&mut *check.remembered.lock().expect("lock"))),
        };
        assert!(matches!(check.check(&bad).await, Verdict::Failed(_)));
        assert_eq!(
            check.check(&prepared("def level(sku):\n    return 0\n")).await,
            Verdict::Unchecked(
                "failed to start /nonexistent/python3 for the static check of the Python code: No such file or directory (os error 2)"
                    .into()
            )
        );
    }
}
