//! `eol compare`: recorded prototype examples (from Redis, or a JSONL file)
//! replayed through the implementation, an agreement table per operation, then
//! every disagreement and error with its input, both outputs and the fields
//! that differ. Also the agreement check of `eol generate --min-agreement`.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::read_feature;
use eol_runner::bootstrap::load_runtime;
use eol_runner::compare::{
    self, Agreement, CompareError, Example, ExampleResult, Tally, TextComparer,
};
use eol_runner::engine::Runtime;
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

/// Where the examples come from.
pub(super) enum Source<'a> {
    /// The lists the prototype recorded in Redis.
    Recorded,
    /// A JSONL file.
    File(&'a Path),
}

/// What a comparison found.
pub(super) struct Outcome {
    /// One row per operation compared.
    pub(super) tallies: Vec<Tally>,
    /// Every replayed example.
    pub(super) results: Vec<ExampleResult>,
    /// How free text was compared.
    pub(super) texts: TextComparer,
}

/// Compares and prints; exit code 1 when any example disagrees or errs.
pub(super) async fn compare(
    cli: &Cli,
    file: &Path,
    operation: Option<&str>,
    limit: usize,
    examples: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let feature = read_feature(file)?;
    let runtime = load_runtime(&cli.runtime_settings(), file, feature).await?;
    let source = examples.map_or(Source::Recorded, Source::File);
    let outcome = run(&runtime, operation, limit, &source).await?;
    let replayed: usize = outcome.tallies.iter().map(Tally::total).sum();
    if replayed == 0 {
        let whence = match source {
            Source::Recorded => "recorded in Redis (prototyped calls record them; is REDIS_URL the Redis the feature ran on?)".to_owned(),
            Source::File(p) => format!("in {}", p.display()),
        };
        return Err(Failure::new(
            "no_examples",
            format!(
                "nothing to compare: no examples of {} {whence}",
                outcome
                    .tallies
                    .iter()
                    .map(|t| format!("'{}'", t.operation))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if cli.output == OutputFormat::Json {
        println!(
            "{}",
            json!({
                "feature": runtime.feature().name(),
                "text_comparison": outcome.texts.describe(),
                "operations": outcome.tallies.iter().map(row_json).collect::<Vec<_>>(),
                "examples": outcome.results,
            })
        );
    } else {
        print_text(&outcome);
    }
    let all = compare::overall(&outcome.tallies);
    Ok(if all.disagree + all.error == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Replays the examples of `operation` (or of every operation with code) and
/// compares them.
pub(super) async fn run(
    runtime: &Runtime,
    operation: Option<&str>,
    limit: usize,
    source: &Source<'_>,
) -> Result<Outcome, Failure> {
    let ops = compare::targets(runtime, operation).map_err(failure)?;
    let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
    let from_file = match source {
        Source::File(path) => Some(read_jsonl(
            path,
            &names,
            &runtime.feature().operation_names(),
        )?),
        Source::Recorded => None,
    };
    let texts = TextComparer::from_env().await;
    let mut tallies = Vec::new();
    let mut results = Vec::new();
    for op in ops {
        let examples: Vec<Example> = match &from_file {
            Some(lines) => lines
                .iter()
                .filter(|(name, _)| *name == op.name)
                .map(|(_, e)| e.clone())
                .take(limit)
                .collect(),
            None => compare::recorded(runtime, &op.name, limit)
                .await
                .map_err(failure)?,
        };
        let replayed = compare::replay(runtime, op, &examples, &texts).await;
        tallies.push(Tally::of(&op.name, &replayed));
        results.extend(replayed);
    }
    Ok(Outcome {
        tallies,
        results,
        texts,
    })
}

fn failure(e: CompareError) -> Failure {
    match e {
        CompareError::Examples(e) => Failure::new("redis", e.to_string()),
        CompareError::NoJudge { .. } => Failure::new("no_model", e.to_string()),
        other => Failure::usage(other.to_string()),
    }
}

/// The examples of a JSONL file for the `operations` compared, each with its
/// operation: the line's `"operation"`, else the only operation compared. A
/// line naming an operation the feature does not have (`known`) is an error.
fn read_jsonl(
    path: &Path,
    operations: &[&str],
    known: &[&str],
) -> Result<Vec<(String, Example)>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let entry: Value = serde_json::from_str(line)
            .map_err(|e| Failure::usage(format!("{at}: not a JSON object: {e}")))?;
        let mut example = Example::from_entry(&entry).ok_or_else(|| {
            Failure::usage(format!(
                "{at}: expected an object with \"input\" and \"output\" (and optionally \"operation\")"
            ))
        })?;
        let operation = match entry.get("operation") {
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(Failure::usage(format!(
                    "{at}: \"operation\" must be a string, got {other}"
                )));
            }
            None if operations.len() == 1 => operations[0].to_owned(),
            None => {
                return Err(Failure::usage(format!(
                    "{at}: the line names no \"operation\" and several operations are compared ({}): add \"operation\" or pass --operation",
                    operations.join(", ")
                )));
            }
        };
        if !known.contains(&operation.as_str()) {
            return Err(Failure::usage(format!(
                "{at}: the feature has no operation '{operation}' (it has: {})",
                known.join(", ")
            )));
        }
        example.origin = Some(at);
        // Lines of operations not compared (another --operation) are passed over.
        if operations.contains(&operation.as_str()) {
            out.push((operation, example));
        }
    }
    Ok(out)
}

fn row_json(t: &Tally) -> Value {
    json!({
        "operation": t.operation,
        "agree": t.agree,
        "disagree": t.disagree,
        "error": t.error,
        "agreement": t.agreement(),
    })
}

fn percent(t: &Tally) -> String {
    t.agreement()
        .map_or_else(|| "no examples".to_owned(), |p| format!("{p:.1}%"))
}

/// The agreement table, then each disagreement and error.
pub(super) fn print_text(outcome: &Outcome) {
    println!(
        "{:<28} {:>6} {:>9} {:>6}  agreement",
        "operation", "agree", "disagree", "error"
    );
    for t in &outcome.tallies {
        println!(
            "{:<28} {:>6} {:>9} {:>6}  {}",
            t.operation,
            t.agree,
            t.disagree,
            t.error,
            percent(t)
        );
    }
    println!("{}", outcome.texts.describe());
    for r in &outcome.results {
        let mark = match r.verdict {
            Agreement::Agree => continue,
            Agreement::Disagree => "DISAGREE",
            Agreement::Error => "ERROR",
        };
        println!();
        match &r.origin {
            Some(origin) => println!("{mark}  {} example {} ({origin})", r.operation, r.index),
            None => println!("{mark}  {} example {}", r.operation, r.index),
        }
        println!("  input:          {}", r.input);
        println!("  prototype:      {}", r.prototype);
        if let Some(out) = &r.implementation {
            println!("  implementation: {out}");
        }
        if let Some(error) = &r.error {
            println!("  error:          {error}");
        }
        for d in &r.differences {
            let path = if d.path.is_empty() {
                "(output)"
            } else {
                &d.path
            };
            println!(
                "  differs at {path}: {} (prototype {}, implementation {})",
                d.reason, d.expected, d.actual
            );
        }
    }
}
