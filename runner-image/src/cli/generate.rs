//! `eol generate`: the model writes Python for prototyped operations; code is
//! written out only once it passes the tests.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::{read_feature, read_suite, write_atomically};
use eol_core::Feature;
use eol_runner::bootstrap::load_runtime;
use eol_runner::compare;
use eol_runner::engine::MODEL_SETTING;
use eol_runner::engine::Runtime;
use eol_runner::examples::EXAMPLES_KEPT;
use eol_runner::generate::{self, Progress};
use eol_runner::prototype::Prototyper;
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Generates, writes the accepted code (in place or into a directory) and
/// reports each operation; exit code 1 unless every operation got code.
pub(super) async fn generate(
    cli: &Cli,
    file: &Path,
    operation: Option<&str>,
    in_place: bool,
    output_dir: Option<&Path>,
    attempts: u32,
    min_agreement: Option<f64>,
) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let tests_path = eol_runner::tests_file_for(file);
    let suite = if tests_path.exists() {
        Some(read_suite(&tests_path)?)
    } else {
        None
    };
    let runtime = load_runtime(&cli.runtime_settings(), file, feature).await?;
    let Some(model) = runtime.model().cloned() else {
        return Err(Failure::new(
            "no_model",
            format!(
                "eol generate needs a model: set {MODEL_SETTING} (or start the local one: eval \"$(scripts/llm.sh start)\")"
            ),
        ));
    };
    let text = cli.output == OutputFormat::Text;
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = |p: Progress| match (&bar, p) {
        (Some(bar), Progress::Attempt { operation, attempt }) => {
            bar.set_message(format!("{operation}: attempt {attempt}/{attempts}"))
        }
        (None, Progress::Attempt { operation, attempt }) if text => {
            eprintln!("{operation}: attempt {attempt}/{attempts}")
        }
        _ => {}
    };
    let name = file.display().to_string();
    let (updated, reports) = generate::generate(
        &name,
        &runtime,
        &model,
        suite.as_ref(),
        operation,
        attempts,
        &progress,
    )
    .await
    .map_err(|e| Failure::new("generate", e.to_string()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let accepted = reports.iter().filter(|r| r.code.is_some()).count();
    let agreement = match min_agreement {
        Some(min) if accepted > 0 => {
            let generated: Vec<&str> = reports
                .iter()
                .filter(|r| r.code.is_some())
                .map(|r| r.operation.as_str())
                .collect();
            Some(check_agreement(&name, &runtime, &model, &updated, &generated, min).await?)
        }
        _ => None,
    };
    let refused = agreement.as_ref().and_then(|a| a.refusal.clone());
    // The user's file as written, with only the accepted code blocks added.
    let merged = eol_core::source_text(&updated);
    let destination = match (in_place, output_dir) {
        _ if accepted == 0 || refused.is_some() => None,
        (true, _) => Some(file.to_path_buf()),
        (false, Some(dir)) => Some(dir.join(file.file_name().unwrap_or_default())),
        (false, None) => None,
    };
    if let Some(dest) = &destination {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::usage(format!("failed to create {}: {e}", dir.display())))?;
        }
        write_atomically(dest, &merged)
            .map_err(|e| Failure::usage(format!("failed to write {}: {e}", dest.display())))?;
    }
    if text {
        for r in &reports {
            match &r.code {
                Some(code) => {
                    println!(
                        "ok    {}: passed {} tests after {} attempt(s)",
                        r.operation, r.passed, r.attempts
                    );
                    if destination.is_none() {
                        println!("```python\n{code}```");
                    }
                }
                None => {
                    println!(
                        "FAIL  {}: no code passed after {} attempt(s); still failing:",
                        r.operation, r.attempts
                    );
                    for f in &r.failures {
                        println!("      {f}");
                    }
                }
            }
        }
        if let Some(dest) = &destination {
            println!("wrote {}", dest.display());
        }
        println!("{accepted} generated, {} failed", reports.len() - accepted);
        if let Some(a) = &agreement {
            println!("{}", a.summary);
        }
        if let Some(refusal) = &refused {
            for outcome in agreement.iter().flat_map(|a| &a.outcomes) {
                println!();
                super::compare::print_text(outcome);
            }
            eprintln!("error: {refusal}");
        }
    } else {
        println!(
            "{}",
            json!({
                "operations": reports,
                "written": destination.map(|d| d.display().to_string()),
                "agreement": agreement.as_ref().map(|a| a.summary.clone()),
                "refused": refused,
            })
        );
    }
    if refused.is_some() {
        return Ok(ExitCode::from(1));
    }
    Ok(if accepted == reports.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The agreement of newly generated code with the prototype's recorded examples.
struct AgreementCheck {
    /// One line: the measured agreement, or why it was not measured.
    summary: String,
    /// Why the code is refused, when it agrees less than asked.
    refusal: Option<String>,
    /// The comparisons, to show the disagreements of refused code.
    outcomes: Vec<super::compare::Outcome>,
}

/// Replays the recorded examples of the `generated` operations through the
/// code in `updated` and measures how many agree with the prototype (at least
/// `min` percent are needed). Without recorded examples nothing is measured,
/// and the summary says so.
async fn check_agreement(
    file: &str,
    runtime: &Runtime,
    model: &Arc<Prototyper>,
    updated: &Feature,
    generated: &[&str],
    min: f64,
) -> Result<AgreementCheck, Failure> {
    let candidate = Runtime::load(
        file,
        updated.clone(),
        runtime.pool().clone(),
        runtime.store().clone(),
    )
    .await
    .map_err(|d| Failure::invalid(&d))?
    .with_model(Some(model.clone()));
    let mut outcomes = Vec::new();
    for op in generated {
        outcomes.push(
            super::compare::run(
                &candidate,
                Some(op),
                EXAMPLES_KEPT as usize,
                &super::compare::Source::Recorded,
            )
            .await?,
        );
    }
    let tallies: Vec<_> = outcomes.iter().flat_map(|o| o.tallies.clone()).collect();
    let all = compare::overall(&tallies);
    let Some(measured) = all.agreement() else {
        return Ok(AgreementCheck {
            summary: format!(
                "agreement not measured: no recorded prototype examples of {} (--min-agreement {min}% needs them)",
                generated.join(", ")
            ),
            refusal: None,
            outcomes,
        });
    };
    let summary = format!(
        "agreement with the prototype: {measured:.1}% ({} of {} recorded examples; {} disagree, {} error)",
        all.agree,
        all.total(),
        all.disagree,
        all.error
    );
    let refusal = (measured < min).then(|| {
        format!(
            "the generated code is refused: it agrees with the prototype on {measured:.1}% of the recorded examples ({} of {}), below --min-agreement {min}%; nothing was written",
            all.agree,
            all.total()
        )
    });
    Ok(AgreementCheck {
        summary,
        refusal,
        outcomes,
    })
}
