//! `eol generate`: the model writes Python for prototyped operations, and the
//! code is kept only when it passes the sandbox's checks and the operation's
//! tests in the implementation phase.

use crate::engine::Runtime;
use crate::prototype::Prototyper;
use crate::sandbox::DEFAULT_ALLOWED_MODULES;
use crate::testing::{self, Verdict};
use eol_core::{Feature, Operation, OperationPhase, Phase, TestSuite};
use serde_json::{Value, json};
use std::sync::Arc;

/// How many times the model may try per operation.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// What happened to one operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GeneratedOperation {
    /// The operation.
    pub operation: String,
    /// The accepted code, if any attempt passed.
    pub code: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Cases that passed with the accepted (or last) code.
    pub passed: usize,
    /// What still fails with the last attempt (empty when accepted).
    pub failures: Vec<String>,
}

/// Progress, for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Starting attempt `attempt` for `operation`.
    Attempt {
        /// The operation.
        operation: String,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Done with `operation`.
    Done(GeneratedOperation),
}

/// Why generation could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The named operation does not exist or is not prototyped.
    #[error("{0}")]
    NoSuchOperation(String),
    /// An operation has nothing to be checked against.
    #[error(
        "operation '{0}' has no tests and no recorded examples: write tests in the .test.eol file (or run it in the prototyping phase to record examples) before generating code"
    )]
    NothingToCheck(String),
}

/// The prototyped operations to generate code for.
pub fn targets<'f>(
    feature: &'f Feature,
    only: Option<&str>,
) -> Result<Vec<&'f Operation>, GenerateError> {
    match only {
        Some(name) => match feature.operation(name) {
            Some(op) => Ok(vec![op]),
            None => Err(GenerateError::NoSuchOperation(format!(
                "feature '{}' has no operation '{name}' (it has: {})",
                feature.name(),
                feature.operation_names().join(", ")
            ))),
        },
        None => Ok(feature
            .operations
            .iter()
            .filter(|o| o.phase == OperationPhase::Prototyping)
            .collect()),
    }
}

/// Generates code for `ops`; returns the feature's new text (with accepted code
/// written in) and a report per operation. Nothing is accepted untested.
pub async fn generate(
    file: &str,
    runtime: &Runtime,
    model: &Arc<Prototyper>,
    suite: Option<&TestSuite>,
    only: Option<&str>,
    attempts: u32,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Feature, Vec<GeneratedOperation>), GenerateError> {
    let mut feature = runtime.feature().clone();
    let names: Vec<String> = targets(&feature, only)?
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let mut reports = Vec::new();
    for name in names {
        let Some(op) = feature.operation(&name).cloned() else {
            continue;
        };
        let cases: Vec<_> = suite
            .map(|s| {
                s.cases
                    .iter()
                    .filter(|c| c.operation == name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let examples = runtime.examples(&name, 10).await.unwrap_or_default();
        if cases.is_empty() && examples.is_empty() {
            return Err(GenerateError::NothingToCheck(name));
        }
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(&op)}),
            json!({"role": "user", "content": task_prompt(&op, &cases, &examples)}),
        ];
        let mut report = GeneratedOperation {
            operation: name.clone(),
            code: None,
            attempts: 0,
            passed: 0,
            failures: Vec::new(),
        };
        while report.attempts < attempts {
            report.attempts += 1;
            progress(Progress::Attempt {
                operation: name.clone(),
                attempt: report.attempts,
            });
            let reply = match model.client().chat(&messages, &[], None).await {
                Ok(r) => r,
                Err(e) => {
                    report.failures = vec![format!("the model request failed: {e}")];
                    break;
                }
            };
            let text = reply.content.unwrap_or_default();
            let code = extract_python(&text);
            let verdict = try_candidate(
                file, runtime, model, &feature, &op, &code, &cases, &examples,
            )
            .await;
            messages.push(json!({"role": "assistant", "content": text}));
            match verdict {
                Ok((candidate, passed)) => {
                    report.passed = passed;
                    report.failures.clear();
                    report.code = Some(code);
                    feature = candidate;
                    break;
                }
                Err((passed, failures)) => {
                    report.passed = passed;
                    messages.push(json!({"role": "user", "content": format!(
                        "That code does not work yet:\n- {}\nWrite the whole function again, fixed, in one ```python block.",
                        failures.join("\n- ")
                    )}));
                    report.failures = failures;
                }
            }
        }
        progress(Progress::Done(report.clone()));
        reports.push(report);
    }
    Ok((feature, reports))
}

/// Checks and tests one candidate; Ok with the feature holding it, or the failures.
#[allow(clippy::too_many_arguments)] // One call site; the inputs are all distinct.
async fn try_candidate(
    file: &str,
    runtime: &Runtime,
    model: &Arc<Prototyper>,
    feature: &Feature,
    op: &Operation,
    code: &str,
    cases: &[eol_core::TestCase],
    examples: &[Value],
) -> Result<(Feature, usize), (usize, Vec<String>)> {
    let current = feature
        .operation(&op.name)
        .ok_or((0, vec!["the operation vanished".to_owned()]))?;
    let text = eol_core::with_operation_code(feature, current, code);
    let candidate = eol_core::parse_feature(file, &text).map_err(|d| (0, vec![d.to_string()]))?;
    let checked = Runtime::load(
        file,
        candidate.clone(),
        runtime.pool().clone(),
        runtime.store().clone(),
    )
    .await
    .map_err(|d| (0, d.iter().map(|x| x.message.clone()).collect::<Vec<_>>()))?
    .with_model(Some(model.clone()));
    let mut failures = Vec::new();
    let mut passed = 0;
    // The candidate's tests and replays write to a keyspace of their own.
    let keyspace = testing::TestKeyspace::new(checked.feature().name());
    for case in cases {
        let result =
            testing::run_case(&checked, &keyspace, case, Some(Phase::Implementation)).await;
        match result.verdict {
            Verdict::Passed => passed += 1,
            Verdict::Skipped => {}
            Verdict::Failed => failures.push(format!(
                "test '{}': {}",
                case.title,
                result.reason.unwrap_or_default()
            )),
        }
    }
    // Recorded examples check that the code runs and meets the Output schema on real inputs.
    for example in examples {
        let input = example.get("input").cloned().unwrap_or(Value::Null);
        if let Err(e) = checked
            .execute_in(
                keyspace.scope(),
                &op.name,
                &input,
                Some(Phase::Implementation),
            )
            .await
        {
            failures.push(format!("recorded example {input}: {e}"));
        }
    }
    keyspace.clear(checked.store()).await;
    if failures.is_empty() {
        Ok((candidate, passed))
    } else {
        Err((passed, failures))
    }
}

/// The instructions for the model that writes an operation's code: the rules of
/// the sandbox and what it provides.
fn system_prompt(op: &Operation) -> String {
    format!(
        "You write Python 3 functions that run in a sandbox.\n\
         Rules: define exactly one top-level function `def {name}({params}):` returning a value that matches the output schema. \
         Imports allowed: {modules}. No file, network or process access; no eval/exec/open; no names starting with '_'. \
         `json` and `redis` are provided without import. `redis` is a redis-py client as redis.Redis(decode_responses=True) gives it: \
         redis-py's method names, arguments and return values, str not bytes \
         (get, set, incr, hget, hset, hgetall, lpush, lrange, sadd, smembers, zadd, zrange, expire, delete, scan_iter, json().get, json().set, ...); \
         redis.pipeline() queues commands and execute() returns their replies. \
         Keys are confined to this feature; KEYS, scripts and blocking commands are refused.\n\
         Answer with one ```python block and nothing else.",
        name = op.name,
        params = op.parameters().join(", "),
        modules = DEFAULT_ALLOWED_MODULES.join(", "),
    )
}

fn task_prompt(op: &Operation, cases: &[eol_core::TestCase], examples: &[Value]) -> String {
    let mut prompt = format!(
        "Specification of `{}`:\n{}\n\nInput schema: {}\nOutput schema: {}\n",
        op.name, op.spec, op.input.value, op.output.value
    );
    if !cases.is_empty() {
        prompt.push_str("\nTests it must pass:\n");
        for c in cases {
            let expect = match &c.expect {
                eol_core::Expectation::Values(v) => v.to_string(),
                eol_core::Expectation::Judged(s) => s.clone(),
            };
            prompt.push_str(&format!(
                "- {}: input {} -> expect {}\n",
                c.title, c.input, expect
            ));
        }
    }
    if !examples.is_empty() {
        prompt.push_str("\nRecorded calls (input -> output):\n");
        for e in examples {
            prompt.push_str(&format!("- {} -> {}\n", e["input"], e["output"]));
        }
    }
    prompt
}

/// The code in a model's answer: the first ```python block, else the whole text.
pub fn extract_python(text: &str) -> String {
    for fence in ["```python", "```py", "```"] {
        if let Some(start) = text.find(fence) {
            let after = &text[start + fence.len()..];
            let body = after.split_once('\n').map_or("", |(_, b)| b);
            if let Some(end) = body.find("```") {
                return body[..end].to_owned();
            }
        }
    }
    text.trim().to_owned() + "\n"
}
