//! `kubectl eol run`: creates a FeatureRun (one operation with an input, or
//! the tests) and, with `--wait`, waits for it to end and prints what it gave.

use crate::access::{RUNS, Target};
use crate::args::RunArgs;
use crate::error::Error;
use crate::tree::condition;
use eol_core::Phase;
use eol_core::crd::{FeatureRun, FeatureRunSpec};
use kube::ResourceExt;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use std::time::Duration;

/// Creates the run; with `--wait`, returns once it ended (an error when it did not succeed).
pub async fn run(target: &Target, args: &RunArgs) -> Result<(), Error> {
    // The Feature must exist and be readable: say so now, not as a run that never starts.
    target.feature(&args.name).await?;
    let input = match (&args.operation, &args.input) {
        (Some(_), Some(text)) => Some(parse_input(text)?),
        (Some(_), None) => Some(serde_json::json!({})),
        (None, _) => None,
    };
    let what = args.operation.as_deref().unwrap_or("tests");
    let run = FeatureRun {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{}-", args.name, what.replace('_', "-"))),
            ..ObjectMeta::default()
        },
        spec: FeatureRunSpec {
            feature_ref: args.name.clone(),
            operation: args.operation.clone(),
            input,
            tests: args.tests.then_some(true),
            phase: args.phase.map(Phase::from),
            timeout_seconds: None,
            retries: 0,
            cancel: false,
            ttl_seconds_after_finished: None,
            mode: None,
        },
        status: None,
    };
    let created = target
        .runs()
        .create(&PostParams::default(), &run)
        .await
        .map_err(|e| target.request("create", RUNS, "FeatureRun", None).failed(e))?;
    let name = created.name_any();
    println!("featurerun.eol.dev/{name} created");
    if !args.wait {
        return Ok(());
    }
    let ended = await_condition(target.runs(), &name, |run: Option<&FeatureRun>| {
        run.is_some_and(|r| outcome(r).is_some())
    });
    let run = match tokio::time::timeout(Duration::from_secs(args.timeout), ended).await {
        Err(_) => {
            return Err(Error::Failed(format!(
                "FeatureRun {name} did not end within {} s (it goes on; `kubectl eol logs {name}` shows its pod's log)",
                args.timeout
            )));
        }
        Ok(Err(e)) => {
            return Err(Error::Failed(format!(
                "lost FeatureRun {name} while waiting: {e}"
            )));
        }
        Ok(Ok(run)) => run
            .ok_or_else(|| Error::Failed(format!("FeatureRun {name} was deleted while waiting")))?,
    };
    print!("{}", report(&run));
    match outcome(&run) {
        Some(true) => Ok(()),
        _ => Err(Error::Failed(format!(
            "FeatureRun {name} did not succeed (`kubectl eol logs {name}` shows its pod's log)"
        ))),
    }
}

/// `Some(succeeded)` once the run's `Succeeded` condition is True or False.
pub fn outcome(run: &FeatureRun) -> Option<bool> {
    let c = condition(&run.status.as_ref()?.conditions, "Succeeded")?;
    match c.status.as_str() {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// What an ended run gave, for people: its result line and output.
pub fn report(run: &FeatureRun) -> String {
    let status = run.status.clone().unwrap_or_default();
    let mut out = String::new();
    if let Some(c) = condition(&status.conditions, "Succeeded") {
        out.push_str(&format!("{}: {}\n", c.reason, c.message));
    }
    if let Some(s) = &status.summary {
        if let (Some(p), Some(f)) = (s.tests_passed, s.tests_failed) {
            out.push_str(&format!("tests: {p} passed, {f} failed\n"));
        }
        if let Some(output) = &s.output {
            let pretty =
                serde_json::to_string_pretty(output).unwrap_or_else(|_| output.to_string());
            out.push_str(&pretty);
            out.push('\n');
        }
        if s.output_truncated == Some(true) {
            out.push_str(&format!(
                "(output too large for the status; the full result is in Redis under {})\n",
                s.result_key.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}

/// The `--input` value: a JSON object, or `@FILE` holding one.
fn parse_input(text: &str) -> Result<serde_json::Value, Error> {
    let (origin, json) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_owned(),
            std::fs::read_to_string(path)
                .map_err(|e| Error::Refused(format!("failed to read --input file {path}: {e}")))?,
        ),
        None => ("--input".to_owned(), text.to_owned()),
    };
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
        Error::Refused(format!(
            "{origin}: not JSON: {e} at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(Error::Refused(format!(
            "{origin}: the input must be a JSON object, got {}",
            crate::tree::shorten(&value.to_string(), 40)
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Fixtures are literals.

    use super::*;

    #[test]
    fn inputs_must_be_json_objects_and_errors_say_where() {
        assert_eq!(parse_input(r#"{"a": 1}"#).unwrap()["a"], 1);
        let err = parse_input("{\"a\": }").unwrap_err().to_string();
        assert!(err.starts_with("--input: not JSON: "), "{err}");
        assert!(err.contains("line 1 column 7"), "{err}");
        let err = parse_input("[1]").unwrap_err().to_string();
        assert_eq!(err, "--input: the input must be a JSON object, got [1]");
        let err = parse_input("@/nonexistent/in.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read --input file /nonexistent/in.json"),
            "{err}"
        );
    }
}
