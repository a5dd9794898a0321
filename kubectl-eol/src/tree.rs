//! The tree of one Feature as text: a header with its phases, switch, shadow
//! comparison and usage, then Feature → configurations, Deployments →
//! ReplicaSets → pods, and its last runs (as `kubectl argo rollouts get`
//! shows a rollout). Pure: a [`Snapshot`] and the time in, text out.

use crate::snapshot::Snapshot;
use eol_core::crd::{FeatureRun, FeatureStatus};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::fmt::Write;

/// How many runs the tree lists, newest first.
pub const RUNS_SHOWN: usize = 5;

/// Label of a configuration's hash (on its ConfigMap, ReplicaSets and pods).
const CONFIG_HASH: &str = "eol.dev/config-hash";
/// Annotation of a configuration's ConfigMap: the phase it serves in.
const PHASE_ANNOTATION: &str = "eol.dev/phase";

/// The whole view: header, then the tree.
pub fn render(snapshot: &Snapshot, now: Timestamp) -> String {
    let mut out = header(snapshot);
    out.push('\n');
    let rows = rows(snapshot, now);
    out.push_str(&table(&rows));
    for resource in &snapshot.denied {
        let _ = writeln!(
            out,
            "({resource}: not shown, you may not list them in namespace {})",
            snapshot.feature.namespace().unwrap_or_default()
        );
    }
    out
}

fn header(snapshot: &Snapshot) -> String {
    let feature = &snapshot.feature;
    let default_status = FeatureStatus::default();
    let status = feature.status.as_ref().unwrap_or(&default_status);
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let label = if label.is_empty() {
            String::new()
        } else {
            format!("{label}:")
        };
        let _ = writeln!(out, "{label:<12} {value}");
    };
    line("Name", feature.name_any());
    line("Namespace", feature.namespace().unwrap_or_default());
    line(
        "Phase",
        format!(
            "{} (desired {})",
            opt(status.phase.map(|p| p.to_string())),
            opt(status.desired_phase.map(|p| p.to_string()))
        ),
    );
    if !status.operation_phases.is_empty() {
        let ops: Vec<String> = status
            .operation_phases
            .iter()
            .map(|(op, phase)| format!("{op}={phase}"))
            .collect();
        line("Operations", ops.join("  "));
    }
    line(
        "Replicas",
        format!("{}/{} ready", status.ready_replicas, status.replicas),
    );
    for kind in ["Ready", "PhaseSwitch", "BudgetExceeded"] {
        if let Some(c) = condition(&status.conditions, kind) {
            let label = if kind == "PhaseSwitch" {
                "Switch"
            } else {
                kind
            };
            line(label, condition_text(c));
        }
    }
    if let Some(shadow) = &status.shadow {
        let mut text = format!("candidate {} {}", shadow.candidate, shadow.state);
        if let Some(agreement) = &shadow.agreement {
            let _ = write!(text, ", agreement {agreement}");
        }
        if let Some(canary) = &shadow.canary {
            let _ = write!(
                text,
                ", canary step {} ({})",
                canary.step,
                canary
                    .progress
                    .clone()
                    .unwrap_or_else(|| format!("{}%", canary.weight))
            );
        }
        line("Shadow", text);
        for op in &shadow.operations {
            line(
                "",
                format!(
                    "  {}: {} samples, {} agree, {} disagree, {} errors{}",
                    op.name,
                    op.samples,
                    op.agree,
                    op.disagree,
                    op.errors,
                    op.agreement
                        .as_ref()
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default()
                ),
            );
        }
    }
    if let Some(usage) = &status.usage {
        let totals = |t: &eol_core::cost::UsageTotals| {
            format!(
                "{} requests, {} tokens, ${:.4}",
                t.requests,
                t.input_tokens + t.output_tokens,
                t.cost
            )
        };
        line(
            "Usage",
            format!(
                "last hour {}; last day {}",
                totals(&usage.usage.last_hour),
                totals(&usage.usage.last_day)
            ),
        );
        if let Some(budget) = &usage.usage.budget {
            let exceeded = if budget.exceeded { " (exceeded)" } else { "" };
            line("Budget", format!("{}{exceeded}", budget.summary));
        }
    }
    out
}

/// One line of the tree.
struct Row {
    prefix: String,
    name: String,
    kind: &'static str,
    status: String,
    age: String,
    info: String,
}

fn rows(snapshot: &Snapshot, now: Timestamp) -> Vec<Row> {
    let feature = &snapshot.feature;
    let status = feature.status.clone().unwrap_or_default();
    let mut rows = vec![Row {
        prefix: String::new(),
        name: feature.name_any(),
        kind: "Feature",
        status: opt(status.phase.map(|p| p.to_string())),
        age: age(&feature.metadata, now),
        info: condition(&status.conditions, "Ready")
            .map(|c| format!("Ready={}", c.status))
            .unwrap_or_default(),
    }];
    // The children of the Feature: configurations, Deployments, then the runs.
    let mut children: Vec<Vec<Row>> = Vec::new();
    for cm in sorted(&snapshot.config_maps) {
        children.push(vec![config_row(cm, &status, now)]);
    }
    for deployment in sorted(&snapshot.deployments) {
        let mut subtree = vec![deployment_row(deployment, now)];
        let sets: Vec<&ReplicaSet> = sorted(&snapshot.replica_sets)
            .into_iter()
            .filter(|rs| owned_by(rs.metadata.owner_references.as_deref(), deployment))
            .collect();
        let mut set_trees = Vec::new();
        for rs in sets {
            let mut set_tree = vec![replica_set_row(rs, now)];
            let pods: Vec<Vec<Row>> = sorted(&snapshot.pods)
                .into_iter()
                .filter(|p| owned_by(p.metadata.owner_references.as_deref(), rs))
                .map(|p| vec![pod_row(p, now)])
                .collect();
            set_tree.extend(nest(pods));
            set_trees.push(set_tree);
        }
        subtree.extend(nest(set_trees));
        children.push(subtree);
    }
    if !snapshot.runs.is_empty() {
        let shown = snapshot.runs.len().min(RUNS_SHOWN);
        let mut runs_tree = vec![Row {
            prefix: String::new(),
            name: "runs".to_owned(),
            kind: "",
            status: String::new(),
            age: String::new(),
            info: format!("last {shown} of {}", snapshot.runs.len()),
        }];
        let runs: Vec<Vec<Row>> = snapshot.runs[..shown]
            .iter()
            .map(|r| vec![run_row(r, now)])
            .collect();
        runs_tree.extend(nest(runs));
        children.push(runs_tree);
    }
    rows.extend(nest(children));
    rows
}

/// Hangs `subtrees` under a parent: `├──`/`└──` on each subtree's first row,
/// `│  `/`   ` before the rows beneath it.
fn nest(subtrees: Vec<Vec<Row>>) -> Vec<Row> {
    let count = subtrees.len();
    let mut out = Vec::new();
    for (i, subtree) in subtrees.into_iter().enumerate() {
        let last = i + 1 == count;
        for (j, mut row) in subtree.into_iter().enumerate() {
            let lead = match (j == 0, last) {
                (true, false) => "├──",
                (true, true) => "└──",
                (false, false) => "│  ",
                (false, true) => "   ",
            };
            row.prefix = format!("{lead}{}", row.prefix);
            out.push(row);
        }
    }
    out
}

fn table(rows: &[Row]) -> String {
    let headers = Row {
        prefix: String::new(),
        name: "NAME".to_owned(),
        kind: "KIND",
        status: "STATUS".to_owned(),
        age: "AGE".to_owned(),
        info: "INFO".to_owned(),
    };
    let all: Vec<&Row> = std::iter::once(&headers).chain(rows).collect();
    let width = |f: &dyn Fn(&Row) -> usize| all.iter().map(|r| f(r)).max().unwrap_or(0);
    let name_w = width(&|r| r.prefix.chars().count() + r.name.chars().count());
    let kind_w = width(&|r| r.kind.len());
    let status_w = width(&|r| r.status.chars().count());
    let age_w = width(&|r| r.age.len());
    let mut out = String::new();
    for r in all {
        let name = format!("{}{}", r.prefix, r.name);
        let pad = name_w - name.chars().count();
        let status_pad = status_w - r.status.chars().count();
        let line = format!(
            "{name}{:pad$}  {:<kind_w$}  {}{:status_pad$}  {:<age_w$}  {}",
            "", r.kind, r.status, "", r.age, r.info
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn config_row(cm: &ConfigMap, status: &FeatureStatus, now: Timestamp) -> Row {
    let hash = cm.labels().get(CONFIG_HASH).cloned().unwrap_or_default();
    let mut roles = Vec::new();
    if !hash.is_empty() {
        if status.config.as_deref() == Some(hash.as_str()) {
            roles.push("serving");
        }
        if status.last_good_config.as_deref() == Some(hash.as_str()) {
            roles.push("last good");
        }
        if status.failed_config.as_deref() == Some(hash.as_str()) {
            roles.push("failed");
        }
    }
    Row {
        prefix: String::new(),
        name: cm.name_any(),
        kind: "ConfigMap",
        status: cm
            .annotations()
            .get(PHASE_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        age: age(&cm.metadata, now),
        info: roles.join(", "),
    }
}

fn deployment_row(d: &Deployment, now: Timestamp) -> Row {
    let spec = d.spec.as_ref();
    let st = d.status.clone().unwrap_or_default();
    Row {
        prefix: String::new(),
        name: d.name_any(),
        kind: "Deployment",
        status: format!(
            "{}/{}",
            st.ready_replicas.unwrap_or(0),
            spec.and_then(|s| s.replicas).unwrap_or(0)
        ),
        age: age(&d.metadata, now),
        info: format!("updated {}", st.updated_replicas.unwrap_or(0)),
    }
}

fn replica_set_row(rs: &ReplicaSet, now: Timestamp) -> Row {
    let st = rs.status.clone().unwrap_or_default();
    let revision = rs
        .annotations()
        .get("deployment.kubernetes.io/revision")
        .map(|r| format!("rev {r}"));
    let config = rs.labels().get(CONFIG_HASH).map(|h| format!("config {h}"));
    Row {
        prefix: String::new(),
        name: rs.name_any(),
        kind: "ReplicaSet",
        status: format!(
            "{}/{}",
            st.ready_replicas.unwrap_or(0),
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
        ),
        age: age(&rs.metadata, now),
        info: [revision, config]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn pod_row(pod: &Pod, now: Timestamp) -> Row {
    let st = pod.status.clone().unwrap_or_default();
    let ready = st
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let restarts: i32 = st
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum();
    let phase = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else {
        st.phase.unwrap_or_default()
    };
    Row {
        prefix: String::new(),
        name: pod.name_any(),
        kind: "Pod",
        status: phase,
        age: age(&pod.metadata, now),
        info: format!(
            "{}, {restarts} restarts",
            if ready { "ready" } else { "not ready" }
        ),
    }
}

fn run_row(run: &FeatureRun, now: Timestamp) -> Row {
    let st = run.status.clone().unwrap_or_default();
    let what = match (&run.spec.operation, run.spec.tests) {
        (Some(op), _) => op.clone(),
        (None, Some(true)) => "tests".to_owned(),
        _ => String::new(),
    };
    let mut info = vec![what];
    if let Some(s) = &st.summary {
        if let (Some(p), Some(f)) = (s.tests_passed, s.tests_failed) {
            info.push(format!("{p} passed, {f} failed"));
        }
        if let Some(output) = &s.output {
            info.push(shorten(&output.to_string(), 60));
        }
        if let Some(d) = &s.duration {
            info.push(d.clone());
        }
        if let Some(cost) = s.cost {
            info.push(format!("${cost:.4}"));
        }
    }
    Row {
        prefix: String::new(),
        name: run.name_any(),
        kind: "FeatureRun",
        status: condition(&st.conditions, "Succeeded")
            .map(|c| c.reason.clone())
            .unwrap_or_else(|| "Pending".to_owned()),
        age: age(&run.metadata, now),
        info: info
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The condition of `type_`.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn condition_text(c: &Condition) -> String {
    if c.message.is_empty() {
        format!("{} {}", c.status, c.reason)
    } else {
        format!("{} {}: {}", c.status, c.reason, c.message)
    }
}

fn owned_by<K: kube::Resource>(
    owners: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]>,
    owner: &K,
) -> bool {
    let uid = owner.meta().uid.as_deref();
    uid.is_some()
        && owners
            .unwrap_or_default()
            .iter()
            .any(|o| Some(o.uid.as_str()) == uid)
}

fn sorted<K: kube::Resource>(items: &[K]) -> Vec<&K> {
    let mut v: Vec<&K> = items.iter().collect();
    v.sort_by(|a, b| {
        a.meta()
            .creation_timestamp
            .cmp(&b.meta().creation_timestamp)
            .then_with(|| a.meta().name.cmp(&b.meta().name))
    });
    v
}

/// Age as kubectl prints it: `45s`, `3m`, `5h`, `2d`.
fn age(meta: &ObjectMeta, now: Timestamp) -> String {
    let Some(Time(created)) = &meta.creation_timestamp else {
        return String::new();
    };
    let seconds = now.as_second().saturating_sub(created.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests;
