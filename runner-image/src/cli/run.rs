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
    if cli.output == OutputFormat::Json {
        println!("{result}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&exec.output).unwrap_or_default()
        );
    }
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
    report.summary.result_key =
        keep_result(cli, runtime.store(), runtime.feature().name(), &result).await;
    report.summary.output = Some(exec.output);
    Ok(ExitCode::SUCCESS)
}
