//! The chart's Grafana dashboard (`charts/eol/dashboards/eol.json`) asks only
//! for what `eol serve` really exports: a real server on a real Redis, whose
//! prototyped operation goes to a scripted model that fails once (so a fallback
//! answers) and whose implemented operation has its results cached, is called
//! a few times and scraped; every metric a query names must be a family of the
//! scrape, used with the suffix its type has (`_total` for a counter,
//! `_bucket`/`_count`/`_sum` for a histogram), and every label a query selects
//! or groups by must be on that family's samples, or be one the scrape adds
//! (`namespace`, `pod`, and `feature` from the chart's PodMonitor).
//!
//! The shadow and canary families appear on a serving pod only once a
//! candidate is on offer (prometheus-client leaves out a family without
//! samples): those are taken from `ShadowMetrics::register`, which the server
//! calls, encoded with one sample each.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_runner::metrics::{
    CanaryLabels, ShadowMetrics, ShadowOperationLabels, ShadowVerdictLabels,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

const DASHBOARD: &str = include_str!("../../charts/eol/dashboards/eol.json");

/// Labels a Prometheus scrape through the chart's PodMonitor adds to every
/// series: `namespace` and `pod` (the Prometheus Operator's target labels) and
/// `feature` (the PodMonitor's relabeling of `app.kubernetes.io/instance`,
/// checked in kind-tests/tests/chart/rendering.rs).
const TARGET_LABELS: [&str; 3] = ["namespace", "pod", "feature"];

/// `greet` asks the model; `count` runs Python, its results cached.
const FEATURE: &str = "---\nname: greeter\nphase: hybrid\ncache:\n  results: [count]\n---\n# Greeter\n\n## Operations\n\n### greet\nPhase: prototyping\n\nGreets someone by name.\n\nInput:\n```yaml\ntype: object\nproperties:\n  name: {type: string}\nrequired: [name]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  greeting: {type: string}\nrequired: [greeting]\n```\n\n### count\nPhase: implementation\n\nCounts the words of a text.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  words: {type: integer}\nrequired: [words]\n```\n\n```python\ndef count(text):\n    return {\"words\": len(text.split())}\n```\n";

const PRIMARY: &str = "gpt-primary";
const FALLBACK: &str = "gpt-backup";
const PRICES: &str =
    r#"{"gpt-primary": {"input": 0.15, "output": 0.6}, "gpt-backup": {"input": 1, "output": 2}}"#;

struct Server {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server uses the test's Redis, so there is no local Redis of its own to stop.
        let _ = self.child.start_kill();
    }
}

/// `eol serve` of [`FEATURE`] on `redis`, asking `primary` and then `fallback`; ready.
async fn serve(
    dir: &std::path::Path,
    primary: &ScriptedServer,
    fallback: &ScriptedServer,
    redis: &eol_runner::store::LocalRedis,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let routes = json!([{"base_url": fallback.url, "model": FALLBACK}]).to_string();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args([
            "serve",
            "greeter.eol",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir)
        .env("REDIS_URL", &redis.url)
        .env("EOL_LLM_BASE_URL", &primary.url)
        .env("EOL_LLM_MODEL", PRIMARY)
        .env("EOL_LLM_FALLBACKS", routes)
        .env("EOL_LLM_PRICES", PRICES)
        .env("EOL_LLM_MAX_RETRIES", "0")
        // No semantic cache: every prototyped call reaches a model.
        .env("EOL_EMBEDDINGS", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.url)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "eol serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(server: &Server, operation: &str, input: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/operations/{operation}", server.url))
        .json(&input)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A scrape: the type of each family (`# TYPE` lines), and the label names
/// and `label -> values` of its samples.
#[derive(Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// The suffixes a family's samples have, by the family's type.
fn sample_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        _ => &[""],
    }
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                scrape.types.insert(name.to_owned(), kind.to_owned());
            }
        }
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (sample, rest) = line.split_at(end);
            let family = scrape
                .family_of(sample)
                .unwrap_or_else(|| panic!("sample {sample} of no family in:\n{text}"));
            let entry = scrape.labels.entry(family).or_default();
            if let Some(inner) = rest.strip_prefix('{') {
                for (name, _, value) in matchers(&inner[..inner.rfind('}').unwrap()]) {
                    entry.entry(name).or_default().insert(value);
                }
            }
        }
        scrape
    }

    /// The family a sample or query name belongs to, if its suffix fits the family's type.
    fn family_of(&self, name: &str) -> Option<String> {
        self.types.iter().find_map(|(family, kind)| {
            let suffix = name.strip_prefix(family.as_str())?;
            sample_suffixes(kind)
                .contains(&suffix)
                .then(|| family.clone())
        })
    }
}

/// `name op "value"` pairs of a label list (`a="x",b=~"y"`), unescaping the values.
fn matchers(list: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let name: String = std::iter::from_fn(|| chars.next_if(|c| is_name_char(*c))).collect();
        if name.is_empty() {
            assert!(chars.peek().is_none(), "cannot parse the labels {list:?}");
            return out;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let op: String = std::iter::from_fn(|| chars.next_if(|c| "=!~".contains(*c))).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        assert_eq!(chars.next(), Some('"'), "no quoted value in {list:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.push(chars.next().unwrap()),
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated value in {list:?}"),
            }
        }
        out.push((name, op, value));
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// One metric a query names, with the labels it selects (`name`, op, value)
/// and the labels the query groups it by (`by (...)`, `label_values(..., label)`).
#[derive(Debug)]
struct Reference {
    query: String,
    metric: String,
    matchers: Vec<(String, String, String)>,
    grouped_by: Vec<String>,
}

/// The `eol_*` metrics `query` names. A `by (...)` applies to the first metric
/// after it (`sum by (phase, le) (rate(eol_x_bucket[5m]))`), and so does the
/// label of `label_values(eol_x{...}, label)`.
fn references(query: &str) -> Vec<Reference> {
    let bytes = query.as_bytes();
    let mut found = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut i = 0;
    while i < query.len() {
        let boundary = i == 0 || !is_name_char(bytes[i - 1] as char);
        let rest = &query[i..];
        if boundary && let Some(after) = rest.strip_prefix("by") {
            let after = after.trim_start();
            if let Some(list) = after.strip_prefix('(') {
                let end = list.find(')').unwrap();
                pending.extend(list[..end].split(',').map(|l| l.trim().to_owned()));
                i = query.len() - list.len() + end + 1;
                continue;
            }
        }
        if boundary && let Some(args) = rest.strip_prefix("label_values(") {
            let end = args.rfind(')').unwrap();
            let (_, label) = args[..end].rsplit_once(',').unwrap();
            pending.push(label.trim().to_owned());
        }
        if boundary && rest.starts_with("eol_") {
            let name: String = rest.chars().take_while(|c| is_name_char(*c)).collect();
            let after = &rest[name.len()..];
            let matchers = match after.strip_prefix('{') {
                Some(list) => matchers(&list[..list.find('}').unwrap()]),
                None => Vec::new(),
            };
            found.push(Reference {
                query: query.to_owned(),
                metric: name.clone(),
                matchers,
                grouped_by: std::mem::take(&mut pending),
            });
            i += name.len();
            continue;
        }
        i += rest.chars().next().unwrap().len_utf8();
    }
    assert!(
        pending.is_empty(),
        "no metric after `by ({})` in {query}",
        pending.join(", ")
    );
    found
}

/// Every PromQL query of the dashboard: the panels' targets (rows' panels
/// included) and the query variables, each with where it is.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| {
                    panic!("a target of panel {title:?} has no PromQL expr: {target}")
                });
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let name = variable["name"].as_str().unwrap();
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap();
            out.push((format!("variable ${name}"), query.to_owned()));
            if let Some(definition) = variable["definition"].as_str() {
                assert_eq!(definition, query, "variable ${name}");
            }
        }
    }
    out
}

/// The families of a serving pod's shadow and canary metrics, one sample each.
fn shadow_families() -> Scrape {
    let mut registry = Registry::with_prefix("eol");
    let metrics = ShadowMetrics::register(&mut registry);
    let operation = || "greet".to_owned();
    metrics
        .comparisons
        .get_or_create(&ShadowVerdictLabels {
            operation: operation(),
            verdict: "agree".to_owned(),
        })
        .inc();
    let copied = ShadowOperationLabels {
        operation: operation(),
    };
    metrics.duration.get_or_create(&copied).observe(0.01);
    metrics.dropped.get_or_create(&copied).inc();
    metrics
        .canary_requests
        .get_or_create(&CanaryLabels {
            operation: operation(),
            outcome: "routed".to_owned(),
        })
        .inc();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    Scrape::parse(&text)
}

#[test]
fn the_query_parser_finds_metrics_matchers_and_groupings() {
    let found = references(
        r#"histogram_quantile(0.95, sum by (phase, le) (rate(eol_a_bucket{x="1", y=~"$y"}[5m]))) / sum(eol_b_total) or label_values(eol_c{z!="a\"b"}, feature)"#,
    );
    let summary: Vec<String> = found
        .iter()
        .map(|r| {
            let matchers: Vec<String> = r
                .matchers
                .iter()
                .map(|(name, op, value)| format!("{name}{op}{value}"))
                .collect();
            format!(
                "{} {{{}}} by ({})",
                r.metric,
                matchers.join(", "),
                r.grouped_by.join(", ")
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "eol_a_bucket {x=1, y=~$y} by (phase, le)",
            "eol_b_total {} by ()",
            "eol_c {z!=a\"b} by (feature)",
        ]
    );
}

#[tokio::test]
async fn every_metric_and_label_the_dashboard_queries_is_exported_by_eol_serve() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let references: Vec<(String, Reference)> = queries(&dashboard)
        .into_iter()
        .flat_map(|(place, query)| {
            references(&query)
                .into_iter()
                .map(move |r| (place.clone(), r))
        })
        .collect();
    assert!(references.len() > 10, "{references:?}");

    // A real server, with samples of every family but the shadow and canary ones.
    let redis = common::local_redis();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.eol"), FEATURE).unwrap();
    let greeting = || Scripted::answer(r#"{"greeting": "hi"}"#);
    // The primary fails once: the fallback answers, and goes on answering
    // while the primary cools down.
    let primary = ScriptedServer::start(vec![Scripted::error(500, "overloaded")]).await;
    let fallback = ScriptedServer::start(vec![greeting(), greeting()]).await;
    let server = serve(dir.path(), &primary, &fallback, &redis).await;
    assert_eq!(call(&server, "greet", json!({"name": "Ada"})).await, 200);
    assert_eq!(call(&server, "greet", json!({"name": "Bob"})).await, 200);
    assert_eq!(call(&server, "greet", json!({})).await, 422);
    for _ in 0..2 {
        assert_eq!(
            call(&server, "count", json!({"text": "one two three"})).await,
            200
        );
    }
    assert_eq!((primary.request_count(), fallback.request_count()), (1, 2));
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(&text);
    assert!(
        scrape.types.keys().all(|f| scrape.labels.contains_key(f)),
        "every family the server shows has samples:\n{text}"
    );
    let shadow = shadow_families();

    let mut problems = Vec::new();
    for (place, r) in &references {
        let (family, live) = match (scrape.family_of(&r.metric), shadow.family_of(&r.metric)) {
            (Some(family), _) => (family, true),
            (None, Some(family)) => (family, false),
            (None, None) => {
                problems.push(format!(
                    "{place}: {} is not exported (families: {:?}, and without samples {:?}) in {}",
                    r.metric, scrape.types, shadow.types, r.query
                ));
                continue;
            }
        };
        let labels = if live {
            &scrape.labels[&family]
        } else {
            &shadow.labels[&family]
        };
        let known = |label: &str| {
            labels.contains_key(label)
                || TARGET_LABELS.contains(&label)
                || (label == "le" && r.metric.ends_with("_bucket"))
        };
        for label in r
            .grouped_by
            .iter()
            .chain(r.matchers.iter().map(|(name, _, _)| name))
        {
            if !known(label) {
                problems.push(format!(
                    "{place}: {} has no label {label} (it has {:?})",
                    r.metric,
                    labels.keys().collect::<Vec<_>>()
                ));
            }
        }
        // A value selected exactly must be one the runner gives, where its samples show it.
        if live {
            for (name, op, value) in &r.matchers {
                if op == "=" && !labels.get(name).is_some_and(|v| v.contains(value)) {
                    problems.push(format!(
                        "{place}: {}{{{name}=\"{value}\"}} selects nothing: {name} is one of {:?}",
                        r.metric,
                        labels.get(name)
                    ));
                }
            }
        }
        // Runner metrics are filtered by the dashboard's variables (panels only:
        // the variables' own queries build those filters).
        if place.starts_with("panel") {
            for (name, variable) in [("namespace", "$namespace"), ("feature", "$feature")] {
                if !r
                    .matchers
                    .iter()
                    .any(|(n, op, v)| n == name && op == "=~" && v == variable)
                {
                    problems.push(format!(
                        "{place}: {} is not filtered by {name}=~\"{variable}\" in {}",
                        r.metric, r.query
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard asks for what eol serve does not export:\n{}\n\nthe scrape:\n{text}",
        problems.join("\n")
    );
}
