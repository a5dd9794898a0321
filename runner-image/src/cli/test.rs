//! `eol test`: a feature's test suite, each case printed as it ends, with
//! optional coverage; the report gets the counts, tokens and result key.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::{read_feature, read_suite};
use super::run_report::keep_result;
use eol_core::Phase;
use eol_core::crd::RunReport;
use eol_runner::bootstrap::load_runtime;
use eol_runner::report;
use eol_runner::spend::{models_of, spend_line, total_of};
use eol_runner::testing::{self, CaseResult, CoverageRow, Summary, Verdict};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Runs every case; exit code 1 when any fails.
pub(super) async fn test(
    cli: &Cli,
    file: &Path,
    phase: Option<Phase>,
    with_coverage: bool,
    feature_file: Option<&Path>,
    report: &mut RunReport,
) -> Result<ExitCode, Failure> {
    let suite = read_suite(file)?;
    let feature_path = feature_file.map_or_else(
        || eol_runner::feature_file_for(file, &suite),
        Path::to_path_buf,
    );
    let feature = read_feature(&feature_path)?;
    suite
        .check_against(&file.display().to_string(), &feature)
        .map_err(|d| Failure::invalid(&d))?;
    let runtime = load_runtime(&cli.runtime_settings(), &feature_path, feature).await?;

    let text = cli.output == OutputFormat::Text;
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(suite.cases.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut results: Vec<CaseResult> = Vec::with_capacity(suite.cases.len());
    let keyspace = testing::TestKeyspace::new(runtime.feature().name());
    for case in &suite.cases {
        if let Some(bar) = &bar {
            bar.set_message(case.title.clone());
        }
        let result = testing::run_case(&runtime, &keyspace, case, phase).await;
        if text {
            let line = case_line(&result);
            match &bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        results.push(result);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    keyspace.clear(runtime.store()).await;
    let summary = Summary::of(&results);
    let coverage = with_coverage.then(|| testing::coverage(&runtime, &suite));
    if text {
        if let Some(rows) = &coverage {
            print_coverage(runtime.feature().name(), rows);
        }
        println!("{summary}");
    }
    // Every model request of the suite: the cases', their retries and the judge's.
    // Every model asked: fallbacks and a spent budget's model included.
    let spends = runtime.model_spend();
    let spend = runtime.model().map(|_| total_of(&spends));
    if text {
        for (meter, spend) in &spends {
            println!("{}", spend_line(meter, spend));
        }
    }
    let result = json!({ "feature": runtime.feature().name(), "cases": results, "summary": summary, "coverage": coverage, "spend": spend });
    if !text {
        println!("{result}");
    }
    report.summary.tests_passed = Some(report::count(summary.passed));
    report.summary.tests_failed = Some(report::count(summary.failed));
    if let Some(spend) = &spend {
        report::fill_spend(&mut report.summary, spend);
        report.summary.model = models_of(&spends);
    }
    report.summary.result_key =
        keep_result(cli, runtime.store(), runtime.feature().name(), &result).await;
    if let Some(error) = report::failed_cases(&results) {
        report.error = Some(error);
        report.error_kind = Some("tests_failed".into());
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One case's line: its verdict, operation, title, phase and time, and why it failed.
pub(super) fn case_line(r: &CaseResult) -> String {
    let mark = match r.verdict {
        Verdict::Passed => "PASS",
        Verdict::Failed => "FAIL",
        Verdict::Skipped => "SKIP",
    };
    let mut line = format!(
        "{mark}  {} :: {}  ({}, {:.1} ms)",
        r.operation,
        r.title,
        r.phase.as_str(),
        r.duration.as_secs_f64() * 1e3
    );
    if let Some(reason) = &r.reason {
        line.push_str("\n      ");
        line.push_str(reason);
    }
    line
}

/// Which operations have tests and which have code, as a table.
fn print_coverage(feature: &str, rows: &[CoverageRow]) {
    println!();
    println!("coverage of feature '{feature}':");
    println!("  {:<28} {:<15} {:>5}  code", "operation", "phase", "tests");
    for r in rows {
        println!(
            "  {:<28} {:<15} {:>5}  {}",
            r.operation,
            r.phase.as_str(),
            r.tests,
            if r.has_code { "yes" } else { "no" }
        );
    }
    let without = |missing: fn(&CoverageRow) -> bool| {
        let names: Vec<&str> = rows
            .iter()
            .filter(|r| missing(r))
            .map(|r| r.operation.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    println!("  without tests: {}", without(|r| r.tests == 0));
    println!("  without code:  {}", without(|r| !r.has_code));
    println!();
}
