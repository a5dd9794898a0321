//! `eol sandbox-probe`: runs the sandbox's corpus of hostile code where the
//! runner runs (e.g. `kubectl exec` into a serving pod) and prints what each
//! case came to.

use super::Failure;
use super::args::{Cli, OutputFormat};
use eol_runner::bootstrap::start_pool;
use eol_runner::sandbox::probe::probe;
use std::process::ExitCode;

pub(super) async fn sandbox_probe(cli: &Cli) -> Result<ExitCode, Failure> {
    let pool = start_pool(&cli.sandbox.settings()).await?;
    let report = probe(&pool).await;
    if cli.output == OutputFormat::Json {
        let json = serde_json::to_string(&report)
            .map_err(|e| Failure::new("internal", format!("the report as JSON: {e}")))?;
        println!("{json}");
    } else {
        for f in &report.findings {
            let mark = if f.held { "held" } else { "ESCAPED" };
            println!(
                "{mark:<8} {:<28} expected {:<13} got {:<13} {:>6} ms  {}",
                f.case, f.expected, f.got, f.millis, f.message
            );
        }
        println!(
            "network namespace of their own: {}; an ordinary call afterwards: {}",
            report.network_isolated,
            if report.recovered {
                "answered"
            } else {
                "FAILED"
            }
        );
    }
    if report.held() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(
            "sandbox_escaped",
            "a hostile case was not refused as expected (see the report)",
        ))
    }
}
