//! `eol generate` against a scripted model: code is accepted only when it passes
//! the sandbox's checks and the operation's tests; failures are fed back.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_core::{OperationPhase, parse_feature, parse_test_suite, source_text};
use eol_runner::engine::Runtime;
use eol_runner::generate::{self, Progress};
use eol_runner::llm::{ChatClient, LlmSettings};
use eol_runner::prototype::Prototyper;
use std::sync::{Arc, Mutex};

const FEATURE: &str = "---\nname: doubler\nphase: prototyping   # comment kept\n---\n# Doubler\n\n## Operations\n\n### double\nReturns twice the number.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {type: integer}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  value: {type: integer}\nrequired: [value]\n```\n";
const TESTS: &str = "---\nfeature: doubler\n---\n\n## doubles\nOperation: double\nInput:\n```yaml\nn: 21\n```\nExpect:\n```yaml\nvalue: 42\n```\n";

fn settings(url: &str) -> LlmSettings {
    LlmSettings {
        max_tokens: 256,
        ..common::scripted_llm::scripted_settings(url)
    }
}

/// The doubler feature loaded on a real sandbox and Redis, with the scripted model
/// (attached to the runtime too when `attach` is set, as `eol generate` does).
async fn doubler(
    server: &ScriptedServer,
    redis: &eol_runner::store::LocalRedis,
    feature: eol_core::Feature,
    attach: bool,
) -> (Arc<Prototyper>, Runtime) {
    let model = Arc::new(Prototyper::new(
        ChatClient::new(settings(&server.url)).unwrap(),
    ));
    let runtime = Runtime::load(
        "doubler.eol",
        feature,
        common::pool(1).await,
        common::store(redis),
    )
    .await
    .unwrap()
    .with_model(attach.then(|| model.clone()));
    (model, runtime)
}

#[tokio::test]
async fn code_is_kept_only_once_it_passes_checks_and_tests() {
    let server = ScriptedServer::start(vec![
        Scripted::answer(
            "```python\nimport os\ndef double(n):\n    return {\"value\": n * 2}\n```",
        ),
        Scripted::answer("```python\ndef double(n):\n    return {\"value\": n + 2}\n```"),
        Scripted::answer(
            "Here you go:\n```python\ndef double(n):\n    return {\"value\": n * 2}\n```",
        ),
    ])
    .await;
    let redis = common::local_redis();
    let feature = parse_feature("doubler.eol", FEATURE).unwrap();
    let suite = parse_test_suite("doubler.test.eol", TESTS).unwrap();
    let (model, runtime) = doubler(&server, &redis, feature, true).await;
    let seen = Mutex::new(Vec::new());
    let progress = |p: Progress| {
        if let Progress::Attempt { attempt, .. } = p {
            seen.lock().unwrap().push(attempt);
        }
    };
    let (updated, reports) = generate::generate(
        "doubler.eol",
        &runtime,
        &model,
        Some(&suite),
        None,
        3,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    let report = &reports[0];
    assert_eq!(report.attempts, 3);
    assert_eq!(report.passed, 1);
    assert!(report.code.as_deref().unwrap().contains("n * 2"));
    // What was wrong each time went back to the model.
    let third = server.request(2).to_string();
    assert!(third.contains("import of 'os' is not allowed"), "{third}");
    assert!(third.contains("/value: expected 42, got 23"), "{third}");
    // The code is in the feature, the phase unchanged, the frontmatter as written.
    let text = source_text(&updated);
    assert!(
        text.starts_with("---\nname: doubler\nphase: prototyping   # comment kept\n---\n"),
        "{text}"
    );
    let reparsed = parse_feature("doubler.eol", &text).unwrap();
    assert_eq!(reparsed.operations[0].phase, OperationPhase::Prototyping);
    assert!(reparsed.operations[0].code.is_some());
}

#[tokio::test]
async fn failing_code_is_never_written_and_the_failures_are_reported() {
    let wrong = Scripted::answer("```python\ndef double(n):\n    return {\"value\": 0}\n```");
    let server = ScriptedServer::start(vec![wrong.clone(), wrong]).await;
    let redis = common::local_redis();
    let feature = parse_feature("doubler.eol", FEATURE).unwrap();
    let suite = parse_test_suite("doubler.test.eol", TESTS).unwrap();
    let (model, runtime) = doubler(&server, &redis, feature.clone(), true).await;
    let (updated, reports) = generate::generate(
        "doubler.eol",
        &runtime,
        &model,
        Some(&suite),
        None,
        2,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(reports[0].code.is_none());
    assert_eq!(
        reports[0].failures,
        ["test 'doubles': /value: expected 42, got 0"]
    );
    assert_eq!(updated, feature, "nothing untested is written");
}

#[tokio::test]
async fn an_operation_with_nothing_to_check_against_is_refused() {
    let server = ScriptedServer::start(vec![]).await;
    let redis = common::local_redis();
    let feature = parse_feature("doubler.eol", FEATURE).unwrap();
    let (model, runtime) = doubler(&server, &redis, feature, false).await;
    let err = generate::generate("doubler.eol", &runtime, &model, None, None, 2, &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("operation 'double' has no tests and no recorded examples"),
        "{err}"
    );
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn eol_generate_in_place_writes_only_tested_code() {
    let server = ScriptedServer::start(vec![
        Scripted::answer("```python\ndef double(n):\n    return {\"value\": n + 1}\n```"),
        Scripted::answer("```python\ndef double(n):\n    return {\"value\": n * 2}\n```"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doubler.eol"), FEATURE).unwrap();
    std::fs::write(dir.path().join("doubler.test.eol"), TESTS).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["generate", "doubler.eol", "--in-place"])
        .env("EOL_LLM_BASE_URL", &server.url)
        .env("EOL_LLM_MAX_RETRIES", "0")
        .env_remove("EOL_LLM_RESPONSE_FORMAT")
        .env_remove("REDIS_URL")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("double: attempt 1/3") && stderr.contains("double: attempt 2/3"),
        "{stderr}"
    );
    assert!(
        stdout.contains("ok    double: passed 1 tests after 2 attempt(s)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("1 generated, 0 failed"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(dir.path().join("doubler.eol")).unwrap();
    assert!(
        written.starts_with(FEATURE),
        "the file as written, with code added:\n{written}"
    );
    assert!(
        written.ends_with("```python\ndef double(n):\n    return {\"value\": n * 2}\n```\n"),
        "{written}"
    );
}
