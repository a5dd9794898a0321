//! `eol check`: validates feature and test files — format, schemas, the
//! Python code's safety in the sandbox, and that references can be read.

use super::Failure;
use super::args::{Cli, OutputFormat};
use super::files::{read_feature, read_suite};
use eol_runner::bootstrap::start_pool;
use eol_runner::context::resolve_all;
use eol_runner::engine::check_code;
use eol_runner::feature_file_for;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// Checks every file and prints one verdict each; exit code 2 when any fails.
pub(super) async fn check(cli: &Cli, files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let mut pool = None;
    let mut reports = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let is_test = name.ends_with(".test.eol");
        let outcome: Result<String, String> = if is_test {
            match read_suite(file) {
                Ok(suite) => {
                    let feature_file = feature_file_for(file, &suite);
                    match read_feature(&feature_file) {
                        Ok(feature) => suite
                            .check_against(&name, &feature)
                            .map(|()| {
                                format!(
                                    "{} cases for feature '{}'",
                                    suite.cases.len(),
                                    suite.feature
                                )
                            })
                            .map_err(|d| d.to_string()),
                        Err(f) => Err(format!(
                            "{name}: the feature under test could not be loaded: {}",
                            f.message
                        )),
                    }
                }
                Err(f) => Err(f.message),
            }
        } else {
            match read_feature(file) {
                Ok(feature) => {
                    if pool.is_none() {
                        pool = Some(start_pool(&cli.sandbox.settings()).await?);
                    }
                    let pool = pool
                        .as_ref()
                        .ok_or_else(|| Failure::usage("sandbox unavailable"))?;
                    let code = check_code(&name, &feature, pool).await;
                    let refs = resolve_all(&name, &feature).map(|_| ());
                    match code.and(refs) {
                        Ok(()) => Ok(format!(
                            "feature '{}', phase {}, {} operations ({} with code)",
                            feature.name(),
                            feature.frontmatter.phase,
                            feature.operations.len(),
                            feature
                                .operations
                                .iter()
                                .filter(|o| o.code.is_some())
                                .count()
                        )),
                        Err(d) => Err(d.to_string()),
                    }
                }
                Err(f) => Err(f.message),
            }
        };
        reports.push((name, outcome));
    }
    let failed = reports.iter().filter(|(_, r)| r.is_err()).count();
    if cli.output == OutputFormat::Json {
        let items: Vec<Value> = reports
            .iter()
            .map(|(file, r)| match r {
                Ok(s) => json!({ "file": file, "ok": true, "summary": s }),
                Err(e) => {
                    json!({ "file": file, "ok": false, "errors": e.lines().collect::<Vec<_>>() })
                }
            })
            .collect();
        println!("{}", json!({ "files": items, "failed": failed }));
    } else {
        for (file, r) in &reports {
            match r {
                Ok(s) => println!("ok    {file}: {s}"),
                Err(e) => {
                    println!("FAIL  {file}");
                    for line in e.lines() {
                        println!("      {line}");
                    }
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
