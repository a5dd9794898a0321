//! What `eol dev` shows: progress and located errors on stderr, each test
//! case and the totals on stdout; with `--output json`, one JSON object per
//! event on stdout.

use super::super::Failure;
use super::super::args::OutputFormat;
use super::super::test::case_line;
use eol_core::crd::KeyRef;
use eol_runner::dev::cluster::ClusterError;
use eol_runner::dev::watch::WatchError;
use eol_runner::testing::{CaseResult, Summary};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Prints the session's events in the chosen format.
pub(super) struct Printer {
    json: bool,
}

impl Printer {
    /// Text for people, or JSON lines for programs.
    pub(super) fn new(output: OutputFormat) -> Self {
        Self {
            json: output == OutputFormat::Json,
        }
    }

    /// One JSON event on its own line.
    fn event(&self, event: Value) {
        println!("{event}");
    }

    /// A good version served: the first, or a reload.
    pub(super) fn served(
        &self,
        file: &Path,
        version: u32,
        address: &str,
        took: Duration,
        first: bool,
    ) {
        let millis = took.as_millis();
        if self.json {
            let event = if first { "serving" } else { "reloaded" };
            self.event(json!({ "event": event, "file": file.display().to_string(), "version": version, "address": address, "millis": millis }));
        } else if first {
            eprintln!(
                "[{}] serving {} (v{version}) on http://{address} in {millis} ms",
                now(),
                file.display()
            );
        } else {
            eprintln!(
                "[{}] reloaded {} (v{version}) in {millis} ms",
                now(),
                file.display()
            );
        }
    }

    /// A save that is not a good version, located as `eol check` shows it.
    pub(super) fn broken(&self, file: &Path, failure: &Failure, serving: Option<u32>) {
        if self.json {
            self.event(json!({
                "event": "invalid",
                "file": file.display().to_string(),
                "kind": failure.kind,
                "errors": failure.message.lines().collect::<Vec<_>>(),
                "serving_version": serving,
            }));
            return;
        }
        let still = match serving {
            Some(v) => format!("still serving v{v}"),
            None => "nothing served yet: waiting for a good save".to_owned(),
        };
        eprintln!("[{}] FAIL  {} ({still})", now(), file.display());
        for line in failure.message.lines() {
            eprintln!("      {line}");
        }
    }

    /// One test case's result.
    pub(super) fn case(&self, result: &CaseResult) {
        if self.json {
            self.event(json!({ "event": "case", "case": result }));
        } else {
            println!("{}", case_line(result));
        }
    }

    /// The totals of a run, and the operations it was for.
    pub(super) fn tests(&self, summary: &Summary, all: bool, operations: &[String]) {
        if self.json {
            let affected = if all { json!("all") } else { json!(operations) };
            self.event(json!({ "event": "tests", "summary": summary, "affected": affected }));
            return;
        }
        let affected = if all {
            "all operations".to_owned()
        } else if operations.is_empty() {
            "no operation changed".to_owned()
        } else {
            operations.join(", ")
        };
        println!("tests: {summary} (affected: {affected})");
    }

    /// No test file.
    pub(super) fn no_tests(&self, tests: &Path) {
        if self.json {
            self.event(json!({ "event": "tests", "missing": tests.display().to_string() }));
        } else {
            println!("tests: none ({} does not exist)", tests.display());
        }
    }

    /// The source applied to the Feature's ConfigMap.
    pub(super) fn pushed(&self, key_ref: &KeyRef, namespace: &str) {
        if self.json {
            self.event(json!({ "event": "pushed", "config_map": key_ref.name, "key": key_ref.key, "namespace": namespace }));
        } else {
            eprintln!(
                "[{}] applied to ConfigMap {namespace}/{} (key {})",
                now(),
                key_ref.name,
                key_ref.key
            );
        }
    }

    /// The source could not be applied; the local server is not affected.
    pub(super) fn push_failed(&self, error: &ClusterError) {
        if self.json {
            self.event(json!({ "event": "push_failed", "error": error.to_string() }));
        } else {
            eprintln!("[{}] error: {error}", now());
        }
    }

    /// The watch reported an error; it goes on.
    pub(super) fn watch_error(&self, error: &WatchError) {
        self.warning(&error.to_string());
    }

    /// Something the session goes on despite.
    pub(super) fn warning(&self, message: &str) {
        if self.json {
            self.event(json!({ "event": "warning", "message": message }));
        } else {
            eprintln!("warning: {message}");
        }
    }
}

/// The local time of day, as the progress lines show it.
fn now() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}
