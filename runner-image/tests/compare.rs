//! `eol compare` as a user runs it, on examples from a JSONL file (no Redis
//! needed) and recorded in Redis: an implementation that agrees with the
//! prototype on some examples, disagrees on others, raises on one and times out
//! on one. And `eol generate --min-agreement`, with a scripted model.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

/// `classify` uses the default rules (enum and number exact, free text by
/// meaning); `estimate` has a Compare block: only `hours`, within 0.5.
const FEATURE: &str = r#"---
name: triage
phase: implementation
---
# Triage

## Operations

### classify
Sorts a support ticket.

Input:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

Output:
```yaml
type: object
properties:
  category: {type: string, enum: [bug, billing, other]}
  priority: {type: integer}
  summary: {type: string}
required: [category, priority, summary]
```

```python
def classify(text):
    if "loop" in text:
        while True:
            pass
    if "crash" in text:
        return {"category": "bug", "priority": 1, "summary": "The app crashes."}
    if "refund" in text:
        return {"category": "billing", "priority": 2, "summary": "A refund is asked for."}
    raise ValueError("no rule for this ticket")
```

### estimate
Estimates the hours a job takes.

Input:
```yaml
type: object
properties:
  n: {type: number}
required: [n]
```

Output:
```yaml
type: object
properties:
  hours: {type: number}
  note: {type: string}
required: [hours]
```

Compare:
```yaml
fields: [hours]
tolerance: 0.5
```

```python
def estimate(n):
    return {"hours": n * 1.1, "note": "a rough guess"}
```
"#;

/// The prototype's recorded calls: `classify` agrees on 2, disagrees on 2,
/// raises on 1 and times out on 1; `estimate` agrees on 1, disagrees on 1.
fn examples() -> Vec<Value> {
    vec![
        // Agrees: the summary differs only in case and punctuation.
        json!({"operation": "classify", "input": {"text": "it crashes"}, "output": {"category": "bug", "priority": 1, "summary": "the app crashes"}}),
        // Disagrees on the priority.
        json!({"operation": "classify", "input": {"text": "refund please"}, "output": {"category": "billing", "priority": 3, "summary": "A refund is asked for."}}),
        // Disagrees on the category and the summary's wording.
        json!({"operation": "classify", "input": {"text": "crash on login"}, "output": {"category": "other", "priority": 1, "summary": "Login fails."}}),
        // The implementation raises.
        json!({"operation": "classify", "input": {"text": "hello"}, "output": {"category": "other", "priority": 3, "summary": "A greeting."}}),
        // The implementation times out.
        json!({"operation": "classify", "input": {"text": "loop forever"}, "output": {"category": "other", "priority": 3, "summary": "Odd."}}),
        json!({"operation": "classify", "input": {"text": "refund now"}, "output": {"category": "billing", "priority": 2, "summary": "A refund is asked for."}}),
        // 11 against 10.5: within the tolerance; the note is not compared.
        json!({"operation": "estimate", "input": {"n": 10}, "output": {"hours": 10.5, "note": "something else"}}),
        // 22 against 20: beyond it.
        json!({"operation": "estimate", "input": {"n": 20}, "output": {"hours": 20, "note": "a rough guess"}}),
    ]
}

fn write(dir: &Path, lines: &[Value]) -> (String, String) {
    let feature = dir.join("triage.eol");
    std::fs::write(&feature, FEATURE).unwrap();
    let jsonl = dir.join("examples.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&jsonl, text).unwrap();
    (feature.display().to_string(), jsonl.display().to_string())
}

fn eol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(args)
        .args(["--call-timeout", "1", "--workers", "1"])
        .env_remove("REDIS_URL")
        .env_remove("EOL_LLM_BASE_URL")
        .env_remove("EOL_REPORT_FILE")
        .env_remove("EOL_RUN_ID")
        // Offline: free text is compared as normalised text, and the output says so.
        .env("EOL_EMBEDDINGS", "off")
        .output()
        .expect("eol runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn counts_agreement_per_operation_and_prints_each_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    let (feature, jsonl) = write(dir.path(), &examples());
    let o = eol(&["compare", &feature, "--examples", &jsonl]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let row = |op: &str| {
        out.lines()
            .find(|l| l.starts_with(op))
            .unwrap_or_else(|| panic!("no row for {op}: {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("classify"),
        ["classify", "2", "2", "2", "33.3%"],
        "{out}"
    );
    assert_eq!(
        row("estimate"),
        ["estimate", "1", "1", "0", "50.0%"],
        "{out}"
    );
    assert!(
        out.contains("free text compared as normalized text (case, punctuation and spacing ignored), not by meaning: embeddings are off"),
        "{out}"
    );
    assert!(out.contains("DISAGREE  classify example 2"), "{out}");
    assert!(
        out.contains("differs at priority: numbers differ (prototype 3, implementation 2)"),
        "{out}"
    );
    assert!(out.contains("DISAGREE  classify example 3"), "{out}");
    assert!(
        out.contains(
            "differs at category: enum values differ (prototype \"other\", implementation \"bug\")"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "differs at summary: texts differ (compared as normalized text: no embedding model)"
        ),
        "{out}"
    );
    assert!(out.contains("ERROR  classify example 4"), "{out}");
    assert!(out.contains("no rule for this ticket"), "{out}");
    assert!(out.contains("ERROR  classify example 5"), "{out}");
    assert!(
        out.contains("differs at hours: numbers differ by 2, more than the tolerance 0.5 (prototype 20, implementation 22.0)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("DISAGREE  estimate example 2 ({jsonl}:8)")),
        "a file's examples name their line: {out}"
    );
    assert!(
        !out.contains("classify example 1 (")
            && !out.contains("classify example 6 (")
            && !out.contains("estimate example 1 ("),
        "agreeing examples are not listed: {out}"
    );
}

#[test]
fn json_output_lists_counts_and_the_differing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (feature, jsonl) = write(dir.path(), &examples());
    let o = eol(&[
        "compare",
        &feature,
        "--examples",
        &jsonl,
        "--operation",
        "classify",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["operations"],
        json!([{"operation": "classify", "agree": 2, "disagree": 2, "error": 2, "agreement": 100.0 * 2.0 / 6.0}])
    );
    let results = v["examples"].as_array().unwrap();
    assert_eq!(results.len(), 6, "only classify's lines: {v}");
    let fields = |i: usize| -> Vec<&str> {
        results[i]["differences"]
            .as_array()
            .map(|d| d.iter().filter_map(|x| x["path"].as_str()).collect())
            .unwrap_or_default()
    };
    assert_eq!(fields(0), Vec::<&str>::new());
    assert_eq!(fields(1), ["priority"]);
    assert_eq!(fields(2), ["category", "summary"]);
    let verdicts: Vec<&str> = results
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["agree", "disagree", "disagree", "error", "error", "agree"]
    );
    assert!(
        results[4]["error"].as_str().unwrap().contains("timeout"),
        "the looping call is cut off: {}",
        results[4]
    );
}

#[test]
fn full_agreement_exits_zero_and_limit_takes_the_first_examples() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<Value> = examples().into_iter().take(1).collect();
    let (feature, jsonl) = write(dir.path(), &lines);
    let o = eol(&[
        "compare",
        &feature,
        "--examples",
        &jsonl,
        "--operation",
        "classify",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("100.0%"), "{}", text(&o));
    let (feature, jsonl) = write(dir.path(), &examples());
    let o = eol(&[
        "compare",
        &feature,
        "--examples",
        &jsonl,
        "--operation",
        "classify",
        "--limit",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_bad_line_or_no_examples_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (feature, jsonl) = write(dir.path(), &[json!({"input": {"text": "x"}})]);
    let o = eol(&["compare", &feature, "--examples", &jsonl]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("examples.jsonl:1: expected an object with \"input\" and \"output\""),
        "{}",
        text(&o)
    );
    let typo = json!({"operation": "clasify", "input": {"text": "x"}, "output": {}});
    let (feature, jsonl) = write(dir.path(), &[examples()[0].clone(), typo]);
    let o = eol(&["compare", &feature, "--examples", &jsonl]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "examples.jsonl:2: the feature has no operation 'clasify' (it has: classify, estimate)"
        ),
        "{}",
        text(&o)
    );
    let (feature, jsonl) = write(dir.path(), &[]);
    let o = eol(&["compare", &feature, "--examples", &jsonl]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("nothing to compare: no examples of 'classify', 'estimate' in"),
        "{}",
        text(&o)
    );
}

const DOUBLER: &str = "---\nname: doubler\nphase: prototyping\n---\n# Doubler\n\n## Operations\n\n### double\nReturns twice the number.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {type: integer}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  value: {type: integer}\nrequired: [value]\n```\n";

/// Records the prototype's calls of `double` in `redis` as the runner does
/// (newest first): 4 examples, of which `n * n` gets 0 and 2 right.
async fn record_doubler_examples(redis: &eol_runner::store::LocalRedis) {
    let store = common::store(redis);
    let mut conn = store.connection().await.unwrap();
    for n in [5, 3, 2, 0] {
        let entry = json!({"input": {"n": n}, "output": {"value": 2 * n}}).to_string();
        let _: i64 = redis::cmd("LPUSH")
            .arg("eol:doubler:examples:double")
            .arg(entry)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// `eol ARGS` on `redis` with the scripted model at `llm`, awaited without
/// blocking the runtime the scripted model answers on.
async fn eol_on(redis: &eol_runner::store::LocalRedis, llm: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    cmd.args(args)
        .args(["--workers", "1"])
        .env("REDIS_URL", &redis.url)
        .env_remove("EOL_LLM_BASE_URL")
        .env_remove("EOL_REPORT_FILE")
        .env_remove("EOL_RUN_ID")
        .env("EOL_EMBEDDINGS", "off");
    if let Some(url) = llm {
        cmd.env("EOL_LLM_BASE_URL", url)
            .env("EOL_LLM_MODEL", "scripted");
    }
    cmd.output().await.expect("eol runs")
}

#[tokio::test]
async fn recorded_examples_in_redis_are_replayed() {
    let redis = common::local_redis();
    record_doubler_examples(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doubler.eol");
    let code = "\n```python\ndef double(n):\n    return {\"value\": n * n}\n```\n";
    std::fs::write(
        &file,
        format!(
            "{}{code}",
            DOUBLER.replace("phase: prototyping", "phase: implementation")
        ),
    )
    .unwrap();
    let o = eol_on(
        &redis,
        None,
        &["compare", file.to_str().unwrap(), "--output", "json"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["operations"],
        json!([{"operation": "double", "agree": 2, "disagree": 2, "error": 0, "agreement": 50.0}])
    );
    // Newest first, as recorded: n = 0, 2, 3, 5.
    let inputs: Vec<i64> = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["input"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(inputs, [0, 2, 3, 5]);
    assert_eq!(v["examples"][2]["differences"][0]["path"], "value");
}

#[tokio::test]
async fn generate_refuses_code_that_agrees_less_than_min_agreement() {
    let redis = common::local_redis();
    record_doubler_examples(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doubler.eol");
    std::fs::write(&file, DOUBLER).unwrap();
    let squares = "```python\ndef double(n):\n    return {\"value\": n * n}\n```";

    let llm = ScriptedServer::start(vec![Scripted::answer(squares)]).await;
    let path = file.to_str().unwrap();
    let o = eol_on(
        &redis,
        Some(&llm.url),
        &["generate", path, "--in-place", "--min-agreement", "90"],
    )
    .await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("the generated code is refused: it agrees with the prototype on 50.0% of the recorded examples (2 of 4), below --min-agreement 90%; nothing was written"),
        "{out}"
    );
    assert!(out.contains("DISAGREE  double example 3"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        DOUBLER,
        "the file is untouched"
    );

    let llm = ScriptedServer::start(vec![Scripted::answer(squares)]).await;
    let o = eol_on(
        &redis,
        Some(&llm.url),
        &["generate", path, "--in-place", "--min-agreement", "50"],
    )
    .await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "agreement with the prototype: 50.0% (2 of 4 recorded examples; 2 disagree, 0 error)"
        ),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(&file).unwrap().contains("n * n"),
        "written"
    );
}

#[tokio::test]
async fn generate_says_when_there_are_no_examples_to_measure_agreement_on() {
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doubler.eol");
    std::fs::write(&file, DOUBLER).unwrap();
    // No recorded examples: the tests are what generation checks against.
    let tests = "---\nfeature: doubler\n---\n\n## doubles\nOperation: double\nInput:\n```yaml\nn: 2\n```\nExpect:\n```yaml\nvalue: 4\n```\n";
    std::fs::write(dir.path().join("doubler.test.eol"), tests).unwrap();
    let llm = ScriptedServer::start(vec![Scripted::answer(
        "```python\ndef double(n):\n    return {\"value\": n * 2}\n```",
    )])
    .await;
    let path = file.to_str().unwrap();
    let o = eol_on(
        &redis,
        Some(&llm.url),
        &["generate", path, "--in-place", "--min-agreement", "90"],
    )
    .await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("agreement not measured: no recorded prototype examples of double (--min-agreement 90% needs them)"),
        "{out}"
    );
}

#[tokio::test]
async fn judge_rules_ask_the_model_and_print_its_reason() {
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    let judged = FEATURE.replacen(
        "```python\ndef classify",
        "Compare:\n```yaml\njudge: the same category\nfields: [category]\n```\n\n```python\ndef classify",
        1,
    );
    let lines = &examples()[..2];
    let (feature, jsonl) = write(dir.path(), lines);
    std::fs::write(&feature, &judged).unwrap();
    let args = [
        "compare",
        feature.as_str(),
        "--examples",
        jsonl.as_str(),
        "--operation",
        "classify",
    ];

    // Without a model the comparison does not start.
    let o = eol_on(&redis, None, &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("operation 'classify' is compared by 'judge' (its Compare block), which needs a model: set EOL_LLM_BASE_URL"),
        "{}",
        text(&o)
    );

    let llm = ScriptedServer::start(vec![
        Scripted::answer(r#"{"verdict": true, "reason": "both are bugs"}"#),
        Scripted::answer(r#"{"verdict": false, "reason": "the priorities differ"}"#),
    ])
    .await;
    let o = eol_on(&redis, Some(&llm.url), &args).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["classify", "1", "1", "0", "50.0%"]),
        "{out}"
    );
    assert!(
        out.contains("differs at (output): the model judged they disagree: the priorities differ (prototype {\"category\":\"billing\"}, implementation {\"category\":\"billing\"})"),
        "{out}"
    );
    assert_eq!(llm.request_count(), 2, "one judgement per example");
    let asked = llm.requests.lock().unwrap()[1].to_string();
    assert!(
        asked.contains("the same category"),
        "the criterion reaches the model: {asked}"
    );
}
