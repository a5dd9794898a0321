//! The `eol` command as a user runs it, on the example features, with its
//! embedded default Redis (started from the cache when REDIS_URL is unset).
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use std::process::{Command, Output};

fn eol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("EOL_LLM_BASE_URL")
        .current_dir(common::examples())
        .output()
        .expect("eol runs")
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
