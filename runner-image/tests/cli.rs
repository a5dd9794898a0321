//! The `eol` command as a user runs it, on the example features, with its
//! embedded default Redis (started from the cache when REDIS_URL is unset).
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use serde_json::json;
use std::process::{Command, Output};

fn eol(args: &[&str]) -> Output {
    eol_env(args, &[])
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_examples() {
    let o = eol(&[
        "check",
        "inventory.eol",
        "support-triage.eol",
        "blog-publisher.eol",
        "inventory.test.eol",
        "blog-publisher.test.eol",
        "support-triage.test.eol",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{out}"
    );
}

#[test]
fn check_reports_located_errors_including_unsafe_code() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.eol");
    let src = std::fs::read_to_string(common::examples().join("blog-publisher.eol"))
        .unwrap()
        .replace("import math\n", "import math\nimport subprocess\n");
    std::fs::write(&bad, src).unwrap();
    let o = eol(&["check", bad.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let line = std::fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .position(|l| l == "import subprocess")
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!(
            "bad.eol:{line}:8: operation 'reading_time': import of 'subprocess' is not allowed"
        )),
        "{out}"
    );
}

#[test]
fn run_prints_the_output_and_json_mode_wraps_it() {
    let o = eol(&[
        "run",
        "blog-publisher.eol",
        "--operation",
        "slugify",
        "--input",
        r#"{"title": "Hello, World!"}"#,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"slug": "hello-world"})
    );

    let o = eol(&[
        "--output",
        "json",
        "run",
        "blog-publisher.eol",
        "--operation",
        "reading_time",
        "--input",
        r#"{"text": "a b c"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"], serde_json::json!({"minutes": 1, "words": 3}));
    assert_eq!(v["phase"], "implementation");
}

#[test]
fn run_reads_input_from_a_file_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, r#"{"title": "Crème"}"#).unwrap();
    let o = eol(&[
        "run",
        "blog-publisher.eol",
        "--operation",
        "slugify",
        "--input",
        &format!("@{}", input.display()),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = eol(&[
        "run",
        "blog-publisher.eol",
        "--operation",
        "slugify",
        "--input",
        r#"{"title": 3}"#,
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("feature 'blog-publisher', operation 'slugify': the input does not match the Input schema"), "{err}");
}

#[test]
fn a_prototyped_operation_without_a_model_says_what_to_set() {
    let o = eol(&[
        "run",
        "blog-publisher.eol",
        "--operation",
        "suggest_tags",
        "--input",
        r#"{"title": "t", "text": "x"}"#,
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("operation 'suggest_tags' runs in the prototyping phase, but no model is configured: set EOL_LLM_BASE_URL"), "{err}");
}

#[test]
fn test_runs_the_implementation_example_against_the_embedded_redis() {
    let o = eol(&["test", "inventory.test.eol", "--coverage"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("PASS")).count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("without tests: none") && out.contains("without code:  none"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("3 passed, 0 failed"), "{out}");
}

#[test]
fn test_of_a_hybrid_feature_passes_implemented_cases_and_names_the_missing_model() {
    let o = eol(&["test", "blog-publisher.test.eol", "--coverage"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(out.lines().last(), Some("3 passed, 1 failed"), "{out}");
    assert!(out.contains("FAIL  suggest_tags"), "{out}");
    assert!(
        out.contains("no model is configured: set EOL_LLM_BASE_URL"),
        "{out}"
    );
    assert!(out.contains("without code:  suggest_tags"), "{out}");

    let o = eol(&["--output", "json", "test", "support-triage.test.eol"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["failed"], 2);
    assert_eq!(v["cases"][0]["verdict"], "failed");
}

#[test]
fn switch_refuses_operations_without_code_and_rewrites_only_phase_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blog-publisher.eol");
    let original = std::fs::read_to_string(common::examples().join("blog-publisher.eol")).unwrap();
    std::fs::write(&file, &original).unwrap();
    let path = file.to_str().unwrap();

    let o = eol(&["switch", path, "--to", "implementation"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("these operations have no Python code: suggest_tags"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "a refused switch changes nothing"
    );

    let o = eol(&["switch", path, "--to", "prototyping"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let switched = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<&str> = switched
        .lines()
        .zip(original.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        changed,
        [
            "phase: prototyping",
            "Phase: prototyping",
            "Phase: prototyping"
        ]
    );

    let o = eol(&[
        "switch",
        path,
        "--operation",
        "slugify",
        "--to",
        "implementation",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let f = eol_core::parse_feature("f", &std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(f.frontmatter.phase, eol_core::Phase::Hybrid);
    assert_eq!(
        f.operation("slugify").unwrap().phase,
        eol_core::OperationPhase::Implementation
    );
    assert_eq!(
        f.operation("reading_time").unwrap().phase,
        eol_core::OperationPhase::Prototyping
    );
}

#[test]
fn completions_and_help_are_available() {
    let o = eol(&["completions", "bash"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("complete -F"));
    let o = eol(&["--help"]);
    let (out, _) = text(&o);
    for cmd in ["check", "run", "test", "switch", "completions"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn man_pages_are_written_for_eol_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let o = eol(&["man", out.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let page = |name: &str| {
        std::fs::read_to_string(out.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"))
    };
    let eol_page = page("eol");
    assert!(
        eol_page.starts_with(".ie \\n(.g .ds Aq"),
        "roff: {eol_page:.80}"
    );
    assert!(eol_page.contains(".TH eol 1"), "{eol_page:.400}");
    for command in ["check", "run", "test", "switch", "serve", "man"] {
        let text = page(&format!("eol-{command}"));
        assert!(
            text.contains(&format!(".TH eol-{command} 1")),
            "{command}: {text:.400}"
        );
        // The synopsis names the command as typed.
        assert!(
            text.contains(&format!("\\fBeol {command}\\fR")),
            "{command}: {text}"
        );
    }
    assert!(
        page("eol-run").contains("Run one operation"),
        "{}",
        page("eol-run")
    );
    // A directory that cannot be made is a clear error.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let o = eol(&["man", file.join("man1").to_str().unwrap()]);
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(err.contains("cannot write the man pages in"), "{err}");
}

#[test]
fn without_redis_the_error_says_how_to_install_it() {
    let empty_cache = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eol"))
        .args([
            "run",
            "inventory.eol",
            "--operation",
            "stock_level",
            "--input",
            r#"{"sku": "X-1"}"#,
        ])
        .env_remove("REDIS_URL")
        .env("EOL_CACHE_DIR", empty_cache.path())
        .current_dir(common::examples())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("RedisError"), "{err}");
    assert!(
        err.contains("set REDIS_URL") && err.contains("scripts/redis.sh install"),
        "{err}"
    );
}

/// `eol test` in the prototyping phase on the real local model (started by scripts/test.sh):
/// schema-checked cases pass and natural-language expectations are judged by the model.
#[test]
fn test_in_the_prototyping_phase_runs_on_the_local_model() {
    let url = std::env::var("EOL_LLM_BASE_URL")
        .expect("EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model (scripts/llm.sh start) for this test");
    let o = Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["--output", "json", "test", "support-triage.test.eol"])
        .env_remove("REDIS_URL")
        .env("EOL_LLM_BASE_URL", url)
        .env("EOL_LLM_RESPONSE_FORMAT", "json_object")
        .current_dir(common::examples())
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&o)));
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases[0]["verdict"], "passed", "{v:#}");
    assert_eq!(cases[0]["phase"], "prototyping");
    // A 135M-parameter model's verdict is not the point; that the sentence went to
    // the model is: it passed, was judged not met, or the model gave no usable verdict.
    let judged = &cases[1];
    let reason = judged["reason"].as_str().unwrap_or_default();
    assert!(
        judged["verdict"] == "passed"
            || reason.starts_with("the model judged")
            || reason.contains("could not be judged: the model gave no answer"),
        "{judged:#}"
    );
}

/// `eol` with extra environment variables (e.g. REDIS_URL), from the examples directory.
fn eol_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eol"));
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env_remove("EOL_LLM_BASE_URL")
        .env_remove("EOL_REPORT_FILE")
        .env_remove("EOL_RUN_ID")
        .env_remove("EOL_POD_UID")
        .current_dir(common::examples());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("eol runs")
}

/// The report file, parsed as the operator parses it.
fn read_report(path: &std::path::Path) -> eol_core::crd::RunReport {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.len() <= eol_core::crd::TERMINATION_MESSAGE_LIMIT,
        "{text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Asserts the report's error kind and that its error mentions `needle`.
fn assert_error(report: &eol_core::crd::RunReport, kind: &str, needle: &str) {
    assert_eq!(report.error_kind.as_deref(), Some(kind));
    assert!(
        report.error.as_deref().is_some_and(|e| e.contains(needle)),
        "{report:?}"
    );
}

fn looks_like_duration(d: Option<&str>) -> bool {
    d.and_then(|d| d.strip_suffix('s'))
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|n| n >= 0.0))
}

#[test]
fn a_run_writes_its_report_with_output_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("termination-log");
    let o = eol(&[
        "run",
        "inventory.eol",
        "--operation",
        "stock_level",
        "--input",
        r#"{"sku": "REPORT-1"}"#,
        "--report-file",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let report = read_report(&path);
    assert_eq!(
        report.summary.output,
        Some(serde_json::json!({"sku": "REPORT-1", "level": 0}))
    );
    assert!(
        looks_like_duration(report.summary.duration.as_deref()),
        "{report:?}"
    );
    assert_eq!(report.error, None);
    assert_eq!(report.summary.tokens, None, "no model was used");
    assert_eq!(
        report.summary.result_key, None,
        "no --run-id, nothing stored"
    );
}

#[test]
fn a_failing_test_run_reports_counts_and_names_the_failing_case() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("inventory.test.eol");
    std::fs::write(
        &tests,
        "---\nfeature: inventory\n---\n\n\
         ## an unknown SKU has no stock\nOperation: stock_level\nInput:\n```yaml\nsku: NO-SUCH-SKU-44\n```\nExpect:\n```yaml\nlevel: 0\n```\n\n\
         ## an unknown SKU is fully stocked\nOperation: stock_level\nInput:\n```yaml\nsku: NO-SUCH-SKU-45\n```\nExpect:\n```yaml\nlevel: 7\n```\n",
    )
    .unwrap();
    let report_path = dir.path().join("report.json");
    let feature = common::examples().join("inventory.eol");
    let o = eol_env(
        &[
            "test",
            tests.to_str().unwrap(),
            "--phase",
            "implementation",
            "--feature",
            feature.to_str().unwrap(),
        ],
        &[("EOL_REPORT_FILE", report_path.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let report = read_report(&report_path);
    assert_eq!(report.summary.tests_passed, Some(1));
    assert_eq!(report.summary.tests_failed, Some(1));
    let error = report.error.unwrap_or_default();
    assert!(
        error.starts_with("1 test failed: an unknown SKU is fully stocked ("),
        "{error}"
    );
    assert_eq!(report.error_kind.as_deref(), Some("tests_failed"));
    assert!(looks_like_duration(report.summary.duration.as_deref()));
}

#[test]
fn failures_before_execution_are_reported_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let report_file = path.to_str().unwrap();
    let run = |input: &str| {
        eol(&[
            "run",
            "inventory.eol",
            "--operation",
            "stock_level",
            "--input",
            input,
            "--report-file",
            report_file,
        ])
    };

    // The input does not match the operation's schema.
    let o = run(r#"{"sku": 3}"#);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let report = read_report(&path);
    assert_error(
        &report,
        "invalid_input",
        "the input does not match the Input schema",
    );
    assert_eq!(report.summary.output, None);
    assert!(looks_like_duration(report.summary.duration.as_deref()));

    // The input is not JSON at all.
    let o = run("{not json");
    assert_eq!(o.status.code(), Some(2));
    let report = read_report(&path);
    assert_error(&report, "usage", "--input is not valid JSON");

    // The feature does not parse.
    let bad = dir.path().join("bad.eol");
    std::fs::write(&bad, "---\nname: bad\n---\nno operations\n").unwrap();
    let o = eol(&[
        "run",
        bad.to_str().unwrap(),
        "--operation",
        "x",
        "--report-file",
        report_file,
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert_eq!(
        read_report(&path).error_kind.as_deref(),
        Some("invalid_spec")
    );

    // Arguments clap refuses still leave a report when the path comes from the environment.
    let o = eol_env(
        &[
            "run",
            "inventory.eol",
            "--operation",
            "stock_level",
            "--phase",
            "sideways",
        ],
        &[("EOL_REPORT_FILE", report_file)],
    );
    assert_eq!(o.status.code(), Some(2));
    let report = read_report(&path);
    assert_error(&report, "usage", "sideways");
}

#[test]
fn a_run_id_keeps_the_full_result_in_redis_for_seven_days() {
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let o = eol_env(
        &[
            "--output",
            "json",
            "run",
            "inventory.eol",
            "--operation",
            "add_stock",
            "--input",
            r#"{"sku": "RUN-ID-1", "quantity": 4}"#,
            "--run-id",
            "run-0001",
            "--report-file",
            path.to_str().unwrap(),
        ],
        &[("REDIS_URL", &redis.url)],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report = read_report(&path);
    let key = "eol:inventory:runs:run-0001";
    assert_eq!(report.summary.result_key.as_deref(), Some(key));

    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let stored: String = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored, printed, "the key holds what --output json prints");
    assert_eq!(
        stored["output"],
        serde_json::json!({"sku": "RUN-ID-1", "level": 4})
    );
    let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
    assert!(
        (7 * 24 * 3600 - 60..=7 * 24 * 3600).contains(&ttl),
        "TTL {ttl}"
    );

    // A test run's result holds every case.
    let o = eol_env(
        &[
            "test",
            "inventory.test.eol",
            "--run-id",
            "tests-0001",
            "--report-file",
            path.to_str().unwrap(),
        ],
        &[("REDIS_URL", &redis.url)],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let report = read_report(&path);
    assert_eq!(report.summary.tests_passed, Some(3));
    let key = report.summary.result_key.unwrap();
    assert_eq!(key, "eol:inventory:runs:tests-0001");
    let stored: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["cases"].as_array().map(Vec::len), Some(3));
    assert_eq!(stored["summary"]["passed"], 3);
}

/// A run pod's container that Kubernetes starts again after it completed (seen
/// in `.ci/run` after a containerd restart, despite `restartPolicy: Never`)
/// reports the stored result and does not apply the operation a second time;
/// another pod of the same run (a retry) runs it.
#[test]
fn a_run_started_again_in_the_same_pod_reports_its_result_and_runs_nothing() {
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let run = |pod_uid: &str| {
        eol_env(
            &[
                "run",
                "inventory.eol",
                "--operation",
                "add_stock",
                "--input",
                r#"{"sku": "AGAIN-1", "quantity": 3}"#,
                "--run-id",
                "again-1",
                "--report-file",
                path.to_str().unwrap(),
            ],
            &[("REDIS_URL", &redis.url), ("EOL_POD_UID", pod_uid)],
        )
    };
    let first = run("uid-a");
    assert!(first.status.success(), "{:?}", text(&first));
    let report = read_report(&path);
    assert_eq!(
        report.summary.output,
        Some(json!({"sku": "AGAIN-1", "level": 3}))
    );
    std::fs::remove_file(&path).unwrap();

    let again = run("uid-a");
    assert!(again.status.success(), "{:?}", text(&again));
    let (stdout, stderr) = text(&again);
    assert!(
        stderr.contains("started again after the run had completed"),
        "{stderr}"
    );
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        printed,
        json!({"sku": "AGAIN-1", "level": 3}),
        "the same output"
    );
    let report = read_report(&path);
    assert_eq!(
        report.summary.output,
        Some(json!({"sku": "AGAIN-1", "level": 3}))
    );
    assert_eq!(
        report.summary.result_key.as_deref(),
        Some("eol:inventory:runs:again-1")
    );
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let stock: i64 = redis::cmd("GET")
        .arg("eol:inventory:stock:AGAIN-1")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stock, 3, "the operation ran once");

    // Another pod of the run (a retry the operator made) runs it.
    let retried = run("uid-b");
    assert!(retried.status.success(), "{:?}", text(&retried));
    assert_eq!(
        read_report(&path).summary.output,
        Some(json!({"sku": "AGAIN-1", "level": 6}))
    );
}

#[test]
fn a_result_that_cannot_be_stored_does_not_fail_the_run() {
    // Nothing listens on port 1; slugify needs no Redis, so only the storing fails.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let o = eol_env(
        &[
            "run",
            "blog-publisher.eol",
            "--operation",
            "slugify",
            "--input",
            r#"{"title": "Kept Anyway"}"#,
            "--report-file",
            path.to_str().unwrap(),
        ],
        &[("REDIS_URL", "redis://127.0.0.1:1"), ("EOL_RUN_ID", "r-1")],
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("failed to store the full result"), "{err}");
    let report = read_report(&path);
    assert_eq!(
        report.summary.output,
        Some(serde_json::json!({"slug": "kept-anyway"}))
    );
    assert_eq!(report.summary.result_key, None);

    // An id that could bend the key is refused before anything runs.
    let o = eol_env(
        &[
            "run",
            "blog-publisher.eol",
            "--operation",
            "slugify",
            "--run-id",
            "a:b",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn tests_that_write_data_run_in_a_keyspace_of_their_own_and_leave_nothing() {
    let redis = common::local_redis();
    // An exact expectation after a write: passes only on data no other run touched.
    let file = common::examples().join("../tests/inventory-exact.test.eol");
    let feature = common::examples().join("inventory.eol");
    for run in 1..=2 {
        let o = eol_env(
            &[
                "test",
                file.to_str().unwrap(),
                "--feature",
                feature.to_str().unwrap(),
            ],
            &[("REDIS_URL", &redis.url)],
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "run {run}: {out}{err}");
        assert!(out.contains("1 passed, 0 failed"), "run {run}: {out}");
    }
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("eol:inventory:*")
        .query(&mut conn)
        .unwrap();
    assert!(
        keys.iter().all(|k| !k.contains("TEST-EXACT-1")),
        "test keys left behind or written to the feature's keyspace: {keys:?}"
    );
}
