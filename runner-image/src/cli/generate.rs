//! `eol generate`: the model writes Python for prototyped operations; code is
//! written out only once it passes the tests.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::{read_feature, read_suite, write_atomically};
use eol_runner::bootstrap::load_runtime;
use eol_runner::engine::MODEL_SETTING;
use eol_runner::generate::{self, Progress};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
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
    // The user's file as written, with only the accepted code blocks added.
    let merged = eol_core::source_text(&updated);
    let destination = match (in_place, output_dir) {
        _ if accepted == 0 => None,
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
    } else {
        println!(
            "{}",
            json!({ "operations": reports, "written": destination.map(|d| d.display().to_string()) })
        );
    }
    Ok(if accepted == reports.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
