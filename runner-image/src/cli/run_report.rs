//! The run report of `run` and `test` (`--report-file`): how the command
//! ended, written however it ends, and the full result kept in Redis under
//! `--run-id`.

use super::Failure;
use super::args::{Cli, Command};
use eol_core::crd::RunReport;
use eol_runner::report;
use eol_runner::store::RedisStore;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Whether the command leaves a run report (`--report-file`).
pub(super) fn reports(command: &Command) -> bool {
    matches!(command, Command::Run { .. } | Command::Test { .. })
}

/// Writes the report, logging rather than failing: the run's exit code stands.
pub(super) fn write(path: &Path, report: RunReport) {
    if let Err(e) = report::write_report(path, &report) {
        tracing::warn!(path = %path.display(), error = %e, "failed to write the run report");
    }
}

/// Runs a command that leaves a run report (`run`, `test`), which fills it in;
/// the report is written however the command ends.
pub(super) async fn reported(
    cli: &Cli,
    command: impl AsyncFnOnce(&mut RunReport) -> Result<ExitCode, Failure>,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let mut report = RunReport::default();
    let result = command(&mut report).await;
    finish(cli, report, &result, started);
    result
}

/// Completes a run's report with how the command ended and writes it, if asked for.
fn finish(cli: &Cli, mut report: RunReport, result: &Result<ExitCode, Failure>, started: Instant) {
    let Some(path) = &cli.report_file else {
        return;
    };
    report.summary.duration = Some(report::format_duration(started.elapsed()));
    if let Err(f) = result {
        report.error = Some(f.message.clone());
        report.error_kind = Some(f.kind.to_owned());
    }
    write(path, report);
}

/// Keeps the full result under `--run-id`, returning its key; a failure is only
/// logged, since the run itself is done.
pub(super) async fn keep_result(
    cli: &Cli,
    store: &RedisStore,
    feature: &str,
    result: &Value,
) -> Option<String> {
    let run_id = cli.run_id.as_deref()?;
    if cli.redis_url.is_none() {
        // The embedded Redis stops with this process: a key there would name nothing.
        tracing::warn!("--run-id needs REDIS_URL; the full result is not stored");
        return None;
    }
    match report::store_result(store, feature, run_id, result).await {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!(error = %e, "failed to store the full result; the report has no resultKey");
            None
        }
    }
}
