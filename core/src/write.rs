//! Writing features back to `.eol` text.
//!
//! The writer normalises the frontmatter (canonical key order and formatting) and
//! keeps the body verbatim, so rewriting an unchanged file changes nothing else.
//! Edits (`eol switch`, `eol generate --in-place`) touch only the lines they must.

use crate::feature::{Feature, Operation};
use crate::phase::{OperationPhase, Phase};

/// The feature as `.eol` text with normalised frontmatter and the body as written.
pub fn write_feature(feature: &Feature) -> String {
    // Serialising plain data structs into YAML cannot fail.
    let yaml = serde_yaml::to_string(&feature.frontmatter).unwrap_or_default();
    format!("---\n{yaml}---\n{}", feature.verbatim.body)
}

/// The feature's text as written (frontmatter included), with any edits that
/// produced this model applied: what `--in-place` rewrites write back.
pub fn source_text(feature: &Feature) -> String {
    assemble(feature, &feature.verbatim.body)
}

/// The feature's text with its frontmatter `phase` set to `phase`.
///
/// The `phase:` line is edited in place, so comments and key order survive.
pub fn with_feature_phase(feature: &Feature, phase: Phase) -> String {
    let fm = &feature.verbatim.frontmatter;
    let mut out = String::with_capacity(fm.len() + 16);
    let mut replaced = false;
    for line in fm.split_inclusive('\n') {
        if !replaced && let Some(rest) = line.strip_prefix("phase") {
            let rest = rest.trim_start();
            if let Some(value) = rest.strip_prefix(':') {
                let comment = value.find(" #").map(|i| &value[i..]).unwrap_or("");
                out.push_str(&format!("phase: {phase}{}\n", comment.trim_end()));
                replaced = true;
                continue;
            }
        }
        out.push_str(line);
    }
    if !replaced {
        // The phase was written in flow style or similar: fall back to normalising.
        let mut f = feature.clone();
        f.frontmatter.phase = phase;
        return write_feature(&f);
    }
    format!("---\n{out}---\n{}", feature.verbatim.body)
}

/// The feature's text with operation `op`'s `Phase:` line set to `phase`.
pub fn with_operation_phase(feature: &Feature, op: &Operation, phase: OperationPhase) -> String {
    let layout = op.layout;
    let line = format!("Phase: {phase}");
    match layout.phase_line {
        Some(l) => replace_lines(feature, l, l, &line),
        None => insert_after(feature, layout.heading_line, &line),
    }
}

/// The feature's text with operation `op`'s Python block set to `source`.
pub fn with_operation_code(feature: &Feature, op: &Operation, source: &str) -> String {
    let source = if source.ends_with('\n') {
        source.to_owned()
    } else {
        format!("{source}\n")
    };
    let block = format!("```python\n{source}```");
    match op.layout.code_lines {
        Some((open, close)) => replace_lines(feature, open, close, &block),
        None => insert_after(feature, op.layout.output_close_line, &format!("\n{block}")),
    }
}

fn assemble(feature: &Feature, body: &str) -> String {
    format!("---\n{}---\n{body}", feature.verbatim.frontmatter)
}

/// Replaces file lines `first..=last` of the body with `text`.
fn replace_lines(feature: &Feature, first: usize, last: usize, text: &str) -> String {
    let base = feature.verbatim.body_line;
    let mut body = String::new();
    for (i, line) in feature.verbatim.body.split_inclusive('\n').enumerate() {
        let n = base + i;
        if n == first {
            body.push_str(text);
            body.push('\n');
        }
        if n < first || n > last {
            body.push_str(line);
        }
    }
    assemble(feature, &body)
}

/// Inserts `text` as new lines after file line `after` of the body.
fn insert_after(feature: &Feature, after: usize, text: &str) -> String {
    let base = feature.verbatim.body_line;
    let mut body = String::new();
    for (i, line) in feature.verbatim.body.split_inclusive('\n').enumerate() {
        body.push_str(line);
        if base + i == after {
            if !line.ends_with('\n') {
                body.push('\n');
            }
            body.push_str(text);
            body.push('\n');
        }
    }
    assemble(feature, &body)
}
