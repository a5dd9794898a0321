//! Phase switches: moving a feature, or one operation, to another phase.
//!
//! A switch rewrites the file's text (only the lines it must) and is refused
//! when the result would not be a valid feature, saying why.

use crate::feature::Feature;
use crate::parse::parse_feature;
use crate::phase::{OperationPhase, Phase};
use crate::write::{with_feature_phase, with_operation_phase};

/// The feature's text after switching the whole feature to `to`.
///
/// To `implementation` every operation must have code (the refusal names those
/// without). To `prototyping` or `implementation`, operations' `Phase:` lines are
/// set to match, since the user asked for the whole feature. To `hybrid`, every
/// operation keeps the phase it runs in now, written on its `Phase:` line.
pub fn switch_feature(feature: &Feature, to: Phase) -> Result<String, String> {
    if to == Phase::Implementation {
        let missing: Vec<&str> = feature
            .operations
            .iter()
            .filter(|o| o.code.is_none())
            .map(|o| o.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "feature '{}' cannot switch to implementation: these operations have no Python code: {} (write it, or run `eol generate`)",
                feature.name(),
                missing.join(", ")
            ));
        }
    }
    let mut current = feature.clone();
    for op in &feature.operations {
        let wanted = to.forced().unwrap_or(op.phase);
        let needs_line = match to {
            Phase::Hybrid => op.declared_phase != Some(wanted),
            _ => op.declared_phase.is_some_and(|d| d != wanted),
        };
        if needs_line {
            let op_now = current
                .operation(&op.name)
                .ok_or_else(|| format!("operation '{}' vanished during the switch", op.name))?
                .clone();
            current = reparse(feature, &with_operation_phase(&current, &op_now, wanted))?;
        }
    }
    Ok(with_feature_phase(&current, to))
}

/// The feature's text after switching operation `operation` to `to`.
///
/// The feature becomes hybrid (if it is not already), with every other operation
/// keeping the phase it runs in now.
pub fn switch_operation(
    feature: &Feature,
    operation: &str,
    to: OperationPhase,
) -> Result<String, String> {
    let Some(op) = feature.operation(operation) else {
        return Err(format!(
            "feature '{}' has no operation '{operation}' (it has: {})",
            feature.name(),
            feature.operation_names().join(", ")
        ));
    };
    if to == OperationPhase::Implementation && op.code.is_none() {
        return Err(format!(
            "operation '{operation}' cannot switch to implementation: it has no Python code (write it, or run `eol generate`)"
        ));
    }
    let mut current = feature.clone();
    if feature.frontmatter.phase != Phase::Hybrid {
        current = reparse(feature, &switch_feature(feature, Phase::Hybrid)?)?;
    }
    let op_now = current
        .operation(operation)
        .ok_or_else(|| format!("operation '{operation}' vanished during the switch"))?
        .clone();
    Ok(with_operation_phase(&current, &op_now, to))
}

fn reparse(feature: &Feature, text: &str) -> Result<Feature, String> {
    parse_feature(feature.name(), text)
        .map_err(|d| format!("the switched feature would not be valid:\n{d}"))
}
