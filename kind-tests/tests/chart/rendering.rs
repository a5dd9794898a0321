//! The chart rendered offline: `helm lint --strict`, the NOTES `helm install`
//! prints, `charts/eol/crds` equal to `crds/`, and the values schema refusing
//! typos, wrong types and literal keys. No cluster needed.

use crate::{CUSTOM_VALUES, RELEASE, chart_dir, helm_stdout, values_file};
use eol_kind_tests::cli::{helm, repo_root, text};
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn chart_lints_strict_with_default_and_custom_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let custom = values_file("lint", CUSTOM_VALUES);
    for extra in [
        vec![],
        vec![
            "-f",
            custom.to_str().expect("utf-8 path"),
            "--set",
            "watchNamespace=team-a",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend(extra);
        let out = helm(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "helm {} failed:\n{stdout}\n{}",
            args.join(" "),
            text(&out.stderr)
        );
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
        assert!(!stdout.contains("[WARNING]"), "{stdout}");
    }
}

/// The NOTES `helm install` prints, rendered offline with `extra` values.
fn notes(extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        "eol-system",
        "--dry-run=client",
    ];
    args.extend_from_slice(extra);
    let stdout = helm_stdout(&args);
    stdout
        .split_once("NOTES:")
        .map(|(_, notes)| notes.to_owned())
        .unwrap_or_else(|| panic!("no NOTES in:\n{stdout}"))
}

/// The NOTES line about embeddings.
fn embeddings_line(notes: &str) -> String {
    notes
        .lines()
        .find(|l| l.starts_with("Embeddings:"))
        .unwrap_or_else(|| panic!("no Embeddings line in:\n{notes}"))
        .to_owned()
}

#[test]
fn the_notes_say_how_runner_pods_embed() {
    // By default pods embed with the image's model: the NOTES said "off".
    let default = embeddings_line(&notes(&[]));
    assert!(default.contains("local all-MiniLM-L6-v2"), "{default}");
    assert!(!default.contains("off"), "{default}");
    let off = embeddings_line(&notes(&["--set", "embeddings.local=false"]));
    assert!(off.contains("off in runner pods"), "{off}");
    let api = embeddings_line(&notes(&[
        "--set",
        "embeddings.baseUrl=http://embed.models.svc:8080/v1",
    ]));
    assert!(api.contains("http://embed.models.svc:8080/v1"), "{api}");
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated = repo_root().join("crds");
    let copied = chart_dir().join("crds");
    let yaml_files = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let files = yaml_files(&generated);
    assert!(!files.is_empty(), "no CRDs in {}", generated.display());
    assert_eq!(
        yaml_files(&copied),
        files,
        "charts/eol/crds must hold exactly the files of crds/"
    );
    for file in files {
        let a = std::fs::read(generated.join(&file)).expect("read a generated CRD");
        let b = std::fs::read(copied.join(&file)).expect("read the chart's CRD");
        assert!(
            a == b,
            "charts/eol/crds/{file} drifted from crds/{file}: run `cp crds/*.yaml charts/eol/crds/`"
        );
    }
}

#[test]
fn values_schema_rejects_typos_wrong_types_and_literal_keys() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for (set, expected) in [
        ("replicaCont=2", "replicaCont"),
        ("replicaCount=two", "/replicaCount"),
        ("redis.storageClas=fast", "storageClas"),
        ("serviceMonitor.enabled=yes", "/serviceMonitor/enabled"),
        ("model.responseFormat=xml", "/model/responseFormat"),
        // The API key only ever comes from a Secret.
        ("model.apiKey.value=sk-123", "value"),
        ("embeddings.apiKey.value=sk-123", "value"),
        ("embeddings.baseUrl=embeddings.local", "/embeddings/baseUrl"),
        ("embeddings.local=maybe", "/embeddings/local"),
        ("runner.resources.request.cpu=1", "request"),
        (
            "networkPolicy.embeddings.cidrs[0]=not-a-cidr",
            "/networkPolicy/embeddings/cidrs/0",
        ),
        (
            "networkPolicy.model.cidrs[0]=not-a-cidr",
            "/networkPolicy/model/cidrs/0",
        ),
        // A host without a scheme is no OTLP/HTTP base URL.
        ("otel.endpoint=jaeger:4318", "/otel/endpoint"),
        ("otel.runners=yes", "/otel/runners"),
        // After the built-in service-accounts FlowSchema: never matched.
        (
            "flowControl.matchingPrecedence=9000",
            "/flowControl/matchingPrecedence",
        ),
        (
            "flowControl.nominalConcurrencyShares=0",
            "/flowControl/nominalConcurrencyShares",
        ),
        ("flowControl.enable=false", "enable"),
    ] {
        let out = helm(&["template", RELEASE, chart, "--set", set]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "--set {set} rendered without complaint"
        );
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(expected),
            "--set {set}: the error should name {expected}:\n{stderr}"
        );
    }
    // The template's own checks: a NetworkPolicy needs a namespace to go to.
    let out = helm(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "networkPolicy.enabled=true",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("networkPolicy.namespaces"),
        "{}",
        text(&out.stderr)
    );
}
