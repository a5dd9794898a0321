//! `eol run`: one operation on one input, its output printed.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::read_feature;
use super::run_report::keep_result;
use eol_core::Phase;
use eol_core::crd::RunReport;
use eol_runner::bootstrap::load_runtime;
use eol_runner::report;
use eol_runner::spend::{models_of, spend_line, total_of};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

/// The input: JSON text, or `@path` to a JSON file.
fn parse_input(input: &str) -> Result<Value, Failure> {
    let (text, origin) = match input.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("failed to read input file {path}: {e}")))?,
            path.to_owned(),
        ),
        None => (input.to_owned(), "--input".to_owned()),
    };
    serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{origin} is not valid JSON: {e}")))
}

/// Runs the operation and prints its output; the report gets the output, tokens and result key.
pub(super) async fn run(
    cli: &Cli,
    file: &Path,
    operation: &str,
    input: &str,
    phase: Option<Phase>,
    report: &mut RunReport,
) -> Result<ExitCode, Failure> {
    let input = parse_input(input)?;
    let feature = read_feature(file)?;
    let runtime = load_runtime(&cli.runtime_settings(), file, feature).await?;
    let pod_uid = std::env::var(eol_core::runner_contract::env::POD_UID)
        .ok()
        .filter(|uid| !uid.is_empty());
    if let Some((key, stored)) = stored_by_this_pod(cli, &runtime, pod_uid.as_deref()).await {
        tracing::warn!(
            key,
            "this run's container was started again after the run had completed; its stored result is reported and the operation is not run twice"
        );
        if let Ok(summary) = serde_json::from_value(stored["summary"].clone()) {
            report.summary = summary;
        }
        report.summary.result_key = Some(key);
        print_output(cli, &stored, &stored["output"]);
        return Ok(ExitCode::SUCCESS);
    }
    let mut exec = runtime
        .execute(operation, &input, phase)
        .await
        .map_err(|e| Failure::new(e.kind(), e.to_string()))?;
    let semantic_check = exec.semantic_check.take();
    let result = json!({
        "feature": runtime.feature().name(),
        "operation": operation,
        "phase": exec.phase,
        "output": exec.output,
        "duration_ms": exec.duration.as_secs_f64() * 1e3,
        "trace": exec.trace,
        "cache": exec.cache,
        "spend": runtime.model().map(|_| total_of(&runtime.model_spend())),
    });
    print_output(cli, &result, &exec.output);
    // Once the answer is out: a verdict for the semantic cache's error bound
    // (its model call, if any, counts in the spend below).
    if let Some(check) = semantic_check {
        runtime.settle_semantic_check(check).await;
    }
    if runtime.model().is_some() {
        // Every model asked: fallbacks and a spent budget's model included.
        let spends = runtime.model_spend();
        report::fill_spend(&mut report.summary, &total_of(&spends));
        report.summary.model = models_of(&spends);
        if cli.output != OutputFormat::Json {
            for (meter, spend) in &spends {
                eprintln!("{}", spend_line(meter, spend));
            }
        }
    }
    report.summary.output = Some(exec.output);
    // Kept with the pod's UID and the summary, for a second start of this
    // container to report instead of running again (see stored_by_this_pod).
    let mut stored = result;
    if let (Some(uid), Some(fields)) = (&pod_uid, stored.as_object_mut()) {
        fields.insert("pod_uid".into(), json!(uid));
        fields.insert("summary".into(), json!(report.summary));
    }
    report.summary.result_key =
        keep_result(cli, runtime.store(), runtime.feature().name(), &stored).await;
    Ok(ExitCode::SUCCESS)
}

/// Prints the output: the whole `result` as JSON with `--output json`.
fn print_output(cli: &Cli, result: &Value, output: &Value) {
    if cli.output == OutputFormat::Json {
        println!("{result}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(output).unwrap_or_default()
        );
    }
}

/// The result this very pod (`EOL_POD_UID`) already stored for `--run-id`,
/// with its key: Kubernetes started the run's container again after it
/// completed (seen after a containerd restart, though run pods never
/// restart), and running the operation again would apply it twice. A new
/// pod of the run (a retry, or a new FeatureRun of the same name) has
/// another UID and runs. Any failure to look counts as nothing stored.
async fn stored_by_this_pod(
    cli: &Cli,
    runtime: &eol_runner::engine::Runtime,
    pod_uid: Option<&str>,
) -> Option<(String, Value)> {
    let (run_id, uid) = (cli.run_id.as_deref()?, pod_uid?);
    cli.redis_url.as_ref()?;
    let key = report::result_key(runtime.feature().name(), run_id);
    let mut conn = runtime.store().connection().await.ok()?;
    let text: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .ok()?;
    let stored: Value = serde_json::from_str(&text?).ok()?;
    (stored["pod_uid"].as_str() == Some(uid)).then_some((key, stored))
}
