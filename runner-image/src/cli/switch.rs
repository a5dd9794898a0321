//! `eol switch`: moves a feature, or one operation, to another phase by
//! rewriting its file (or printing the new file).

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::{read_feature, write_atomically};
use eol_core::Phase;
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

/// Rewrites `file` with the new phases and prints them.
pub(super) fn switch(
    cli: &Cli,
    file: &Path,
    to: Phase,
    operation: Option<&str>,
    dry_run: bool,
) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let name = file.display().to_string();
    let new_text = match operation {
        Some(op) => {
            let target = to.forced().ok_or_else(|| {
                Failure::usage("an operation switches to prototyping or implementation, not hybrid")
            })?;
            eol_core::switch_operation(&feature, op, target)
        }
        None => eol_core::switch_feature(&feature, to),
    }
    .map_err(|message| Failure::new("switch_refused", message))?;
    let switched = eol_core::parse_feature(&name, &new_text).map_err(|d| Failure::invalid(&d))?;
    if dry_run {
        print!("{new_text}");
        return Ok(ExitCode::SUCCESS);
    }
    write_atomically(file, &new_text)
        .map_err(|e| Failure::usage(format!("failed to write {name}: {e}")))?;
    let phases: Vec<String> = switched
        .operations
        .iter()
        .map(|o| format!("{}={}", o.name, o.phase))
        .collect();
    if cli.output == OutputFormat::Json {
        let ops: serde_json::Map<String, Value> = switched
            .operations
            .iter()
            .map(|o| (o.name.clone(), json!(o.phase)))
            .collect();
        println!(
            "{}",
            json!({ "file": name, "phase": switched.frontmatter.phase, "operations": ops })
        );
    } else {
        println!(
            "{name}: phase {} ({})",
            switched.frontmatter.phase,
            phases.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
