//! Validating a Feature's source before anything is created: parse the `.eol`
//! text, apply the desired phase, parse the tests, check the documents, and
//! hash the result. Pure: the text is fetched by [`super::fetch`], the Python
//! is checked by [`super::code`].

use crate::hash;
use crate::pod::{ModelSettings, Placement};
use eol_core::crd::Feature;
use eol_core::{OperationPhase, Phase};
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// A source that can be served: the text in the desired phase, and what it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The feature's name in its source (`name:`): the runner's Redis keys are under it.
    pub name: String,
    /// The `.eol` text with the desired phase written in.
    pub source: String,
    /// The `.test.eol` text, if the Feature has tests.
    pub tests: Option<String>,
    /// The phase the feature will serve in.
    pub phase: Phase,
    /// Each operation's phase.
    pub operation_phases: BTreeMap<String, String>,
    /// Whether any operation is executed by the model.
    pub needs_model: bool,
    /// The documents the feature references, by path (`spec.documents`).
    pub documents: BTreeMap<String, String>,
    /// Runner pod resources (`spec.resources`), when set.
    pub resources: Option<ResourceRequirements>,
    /// Runner pod node selector and tolerations.
    pub placement: Placement,
    /// Hash of everything the pods load: source, tests, documents, model settings (10 hex digits).
    pub config_hash: String,
    /// How diagnostics name the source (`Feature ns/name spec.source.inline`, or its ConfigMap key).
    pub file: String,
    /// The operations' Python, for the static check.
    pub code: Vec<OperationCode>,
}

/// One operation's Python, as the static check takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationCode {
    /// The operation (the function the code must define).
    pub operation: String,
    /// The code.
    pub source: String,
    /// The parameters its function must take.
    pub params: Vec<String>,
    /// The code's first line in the source, to locate problems there.
    pub first_line: usize,
}

/// The reasons of `SpecValid=False` (and of a FeatureRun's `SpecInvalid` message).
pub mod reason {
    /// `spec.source` names a ConfigMap key that does not exist (looked for again).
    pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
    /// The `.eol` text does not parse.
    pub const PARSE_ERROR: &str = "ParseError";
    /// `spec.phase` cannot be applied (e.g. implementation without code).
    pub const PHASE_UNAVAILABLE: &str = "PhaseUnavailable";
    /// `spec.tests` does not parse or names unknown operations.
    pub const TESTS_INVALID: &str = "TestsInvalid";
    /// A `spec.documents` entry is not a referenced plain relative path, or a referenced feature does not parse.
    pub const DOCUMENTS_INVALID: &str = "DocumentsInvalid";
    /// An operation's Python fails the sandbox's static check (syntax, imports, private names).
    pub const CODE_INVALID: &str = "CodeInvalid";
    /// `spec.rollout.shadow.operations` names an operation the source lacks.
    pub const ROLLOUT_INVALID: &str = "RolloutInvalid";
    /// `spec.budget` has no limit, or `onExceeded: Model` without a model.
    pub const BUDGET_INVALID: &str = "BudgetInvalid";
}

/// Why a source cannot be served: a condition reason and a located message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// One of [`reason`].
    pub reason: &'static str,
    /// What is wrong, and where.
    pub message: String,
}

/// Validates `text` (the Feature's source) and prepares it for serving.
pub fn prepare(
    feature: &Feature,
    text: &str,
    model: &ModelSettings,
) -> Result<Prepared, SpecProblem> {
    let object = format!(
        "Feature {}/{}",
        feature.namespace().unwrap_or_default(),
        feature.name_any()
    );
    let file = match &feature.spec.source.config_map_key_ref {
        Some(r) => format!("{object} (ConfigMap {} key {})", r.name, r.key),
        None => format!("{object} spec.source.inline"),
    };
    let original = eol_core::parse_feature(&file, text).map_err(|d| SpecProblem {
        reason: reason::PARSE_ERROR,
        message: d.to_string(),
    })?;
    let (source, parsed) = match feature.spec.phase {
        Some(want) if want != original.frontmatter.phase => {
            let switched =
                eol_core::switch_feature(&original, want).map_err(|why| SpecProblem {
                    reason: reason::PHASE_UNAVAILABLE,
                    message: format!("{object}: spec.phase {}: {why}", want),
                })?;
            let reparsed = eol_core::parse_feature(&file, &switched).map_err(|d| SpecProblem {
                reason: reason::PHASE_UNAVAILABLE,
                message: format!("{object}: the source in phase {}: {d}", want),
            })?;
            (switched, reparsed)
        }
        _ => (text.to_owned(), original.clone()),
    };
    if let Some(tests) = &feature.spec.tests {
        let tests_file = format!("{object} spec.tests");
        let suite = eol_core::parse_test_suite(&tests_file, tests).map_err(|d| SpecProblem {
            reason: reason::TESTS_INVALID,
            message: d.to_string(),
        })?;
        suite
            .check_against(&tests_file, &parsed)
            .map_err(|d| SpecProblem {
                reason: reason::TESTS_INVALID,
                message: d.to_string(),
            })?;
    }
    check_documents(&object, &parsed, &feature.spec.documents)?;
    check_shadowed(&object, &parsed, feature)?;
    let operation_phases: BTreeMap<String, String> = parsed
        .operations
        .iter()
        .map(|o| (o.name.clone(), o.phase.to_string()))
        .collect();
    let needs_model = parsed
        .operations
        .iter()
        .any(|o| o.phase == OperationPhase::Prototyping);
    let tests = feature.spec.tests.clone();
    let api_key = model
        .api_key
        .as_ref()
        .map(|k| format!("{}/{}", k.name, k.key))
        .unwrap_or_default();
    let mut parts = vec![
        source.as_str(),
        tests.as_deref().unwrap_or(""),
        model.base_url.as_deref().unwrap_or(""),
        model.name.as_deref().unwrap_or(""),
        &api_key,
        model.response_format.as_deref().unwrap_or(""),
    ];
    // Appended only when set: features without documents or resources keep their hash.
    for (path, text) in &feature.spec.documents {
        parts.extend([path.as_str(), text.as_str()]);
    }
    let resources = feature
        .spec
        .resources
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    if let Some(resources) = &resources {
        parts.extend(["resources", resources.as_str()]);
    }
    let placement = Placement::of(&feature.spec);
    let placed = (!placement.is_empty()).then(|| {
        serde_json::to_string(&(&placement.node_selector, &placement.tolerations))
            .unwrap_or_default()
    });
    if let Some(placed) = &placed {
        parts.extend(["placement", placed.as_str()]);
    }
    let budget = model
        .budget
        .as_ref()
        .map(|b| serde_json::to_string(b).unwrap_or_default());
    if let Some(budget) = &budget {
        parts.extend(["budget", budget.as_str()]);
    }
    let prices = (!model.prices.is_empty())
        .then(|| serde_json::to_string(&model.prices).unwrap_or_default());
    if let Some(prices) = &prices {
        parts.extend(["prices", prices.as_str()]);
    }
    // The fallbacks' env value names their key files; their Secrets' names are
    // in the hash too, as the primary's are.
    let fallbacks = (!model.fallbacks.is_empty())
        .then(|| serde_json::to_string(&model.fallbacks).unwrap_or_default());
    if let Some(fallbacks) = &fallbacks {
        parts.extend(["fallbacks", fallbacks.as_str()]);
    }
    let cooldown = model.cooldown_seconds.map(|s| s.to_string());
    if let Some(cooldown) = &cooldown {
        parts.extend(["cooldown", cooldown.as_str()]);
    }
    let config_hash = hash::of_parts(&parts)[..10].to_owned();
    // Located in the text as written (a phase switch rewrites only the frontmatter).
    let code = original
        .operations
        .iter()
        .filter_map(|op| {
            op.code.as_ref().map(|c| OperationCode {
                operation: op.name.clone(),
                source: c.source.clone(),
                params: op.parameters(),
                first_line: c.first_line.0.line,
            })
        })
        .collect();
    Ok(Prepared {
        name: parsed.name().to_owned(),
        source,
        tests,
        phase: parsed.frontmatter.phase,
        operation_phases,
        needs_model,
        documents: feature.spec.documents.clone(),
        resources: feature.spec.resources.clone(),
        placement,
        config_hash,
        file,
        code,
    })
}

/// Each operation `spec.rollout.shadow.operations` names must be one of the
/// source's, and `spec.rollout.canary.steps` must increase within (0, 100).
fn check_shadowed(
    object: &str,
    parsed: &eol_core::Feature,
    feature: &Feature,
) -> Result<(), SpecProblem> {
    let named = feature
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.shadow.as_ref())
        .map(|s| s.operations.as_slice())
        .unwrap_or_default();
    for (i, name) in named.iter().enumerate() {
        if !parsed.operations.iter().any(|o| o.name == *name) {
            let known: Vec<&str> = parsed.operations.iter().map(|o| o.name.as_str()).collect();
            return Err(SpecProblem {
                reason: reason::ROLLOUT_INVALID,
                message: format!(
                    "{object}: spec.rollout.shadow.operations[{i}]: no operation '{name}' in the source (it has {})",
                    known.join(", ")
                ),
            });
        }
    }
    let canary = feature
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.canary.as_ref());
    if let Some(why) = canary.and_then(crate::feature::shadow::canary::invalid_steps) {
        return Err(SpecProblem {
            reason: reason::ROLLOUT_INVALID,
            message: format!("{object}: spec.rollout.canary.{why}"),
        });
    }
    if let Some(why) = feature
        .spec
        .budget
        .as_ref()
        .and_then(eol_core::cost::Budget::problem)
    {
        return Err(SpecProblem {
            reason: reason::BUDGET_INVALID,
            message: format!("{object}: spec.budget: {why}"),
        });
    }
    Ok(())
}

/// Each of `documents` must be a plain relative path (the pod places it under
/// the feature's directory) that `parsed` references: a file (`@docs/x.md`), or
/// `NAME.eol` for another feature (`@feature:NAME`, read beside this one); and
/// not a name the pod's own files take.
fn check_documents(
    object: &str,
    parsed: &eol_core::Feature,
    documents: &BTreeMap<String, String>,
) -> Result<(), SpecProblem> {
    let referenced = eol_core::runner_contract::referenced_documents(parsed);
    for path in documents.keys() {
        let problem = |why: String| SpecProblem {
            reason: reason::DOCUMENTS_INVALID,
            message: format!("{object} spec.documents[{path:?}]: {why}"),
        };
        let plain = !path.is_empty()
            && !path.starts_with('/')
            && path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
            return Err(problem(
                "not a plain relative path (no leading /, no empty, . or .. parts)".to_owned(),
            ));
        }
        if crate::pod::is_reserved_source_path(path) {
            return Err(problem(
                "the name of one of the pod's own files (feature.eol, feature.test.eol, document-N)"
                    .to_owned(),
            ));
        }
        let Some(reference) = referenced.iter().find(|r| &r.path == path) else {
            let paths: Vec<&str> = referenced.iter().map(|r| r.path.as_str()).collect();
            return Err(problem(if paths.is_empty() {
                "the feature references no documents".to_owned()
            } else {
                format!(
                    "not referenced by the feature, which references {}",
                    paths.join(", ")
                )
            }));
        };
        // Another feature, read as one by the runner: it must parse.
        if reference.feature.is_some() {
            let file = format!("{object} spec.documents[{path:?}]");
            eol_core::parse_feature(&file, &documents[path]).map_err(|d| SpecProblem {
                reason: reason::DOCUMENTS_INVALID,
                message: d.to_string(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SOURCE: &str = include_str!("../../../features/examples/inventory.eol");

    fn feature(spec: serde_json::Value) -> Feature {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1", "generation": 3},
            "spec": spec
        }))
        .expect("a Feature")
    }

    #[test]
    fn a_source_that_does_not_parse_is_reported_with_its_location() {
        let f =
            feature(serde_json::json!({"source": {"inline": "---\nname: x\nphase: nope\n---\n"}}));
        let problem = prepare(
            &f,
            "---\nname: x\nphase: nope\n---\n",
            &ModelSettings::default(),
        )
        .expect_err("invalid");
        assert_eq!(problem.reason, "ParseError");
        assert!(
            problem
                .message
                .starts_with("Feature shop/inventory spec.source.inline:3:"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn the_desired_phase_is_written_into_the_source_and_changes_the_hash() {
        let plain = feature(serde_json::json!({"source": {"inline": SOURCE}}));
        let a = prepare(&plain, SOURCE, &ModelSettings::default()).expect("valid");
        assert_eq!(a.phase, Phase::Implementation);
        assert!(!a.needs_model);
        let proto =
            feature(serde_json::json!({"source": {"inline": SOURCE}, "phase": "prototyping"}));
        let b = prepare(&proto, SOURCE, &ModelSettings::default()).expect("valid");
        assert_eq!(b.phase, Phase::Prototyping);
        assert!(b.needs_model);
        assert!(b.source.contains("phase: prototyping"));
        assert!(b.operation_phases.values().all(|p| p == "prototyping"));
        assert_ne!(a.config_hash, b.config_hash);
        assert_eq!(a.config_hash.len(), 10);
        // Same input, same hash: the rollout is not restarted by a no-op reconcile.
        assert_eq!(
            a,
            prepare(&plain, SOURCE, &ModelSettings::default()).expect("valid")
        );
    }

    const TRIAGE: &str = include_str!("../../../features/examples/support-triage.eol");

    #[test]
    fn referenced_documents_are_kept_and_change_the_hash() {
        let plain = feature(serde_json::json!({"source": {"inline": TRIAGE}}));
        let a = prepare(&plain, TRIAGE, &ModelSettings::default()).expect("valid");
        assert!(a.documents.is_empty());
        let with = feature(serde_json::json!({
            "source": {"inline": TRIAGE},
            "documents": {"docs/refund-policy.md": "Refunds within 30 days."}
        }));
        let b = prepare(&with, TRIAGE, &ModelSettings::default()).expect("valid");
        assert_eq!(
            b.documents["docs/refund-policy.md"],
            "Refunds within 30 days."
        );
        assert_ne!(
            a.config_hash, b.config_hash,
            "a document change rolls the pods"
        );
    }

    #[test]
    fn placement_is_kept_and_changes_the_hash() {
        let plain = feature(serde_json::json!({"source": {"inline": SOURCE}}));
        let a = prepare(&plain, SOURCE, &ModelSettings::default()).expect("valid");
        assert!(a.placement.is_empty());
        let placed = feature(serde_json::json!({
            "source": {"inline": SOURCE},
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
        }));
        let b = prepare(&placed, SOURCE, &ModelSettings::default()).expect("valid");
        assert_eq!(b.placement.node_selector["type"], "kwok");
        assert_eq!(b.placement.tolerations.len(), 1);
        assert_ne!(
            a.config_hash, b.config_hash,
            "a placement change rolls the pods"
        );
    }

    #[test]
    fn resources_are_kept_and_change_the_hash() {
        let plain = feature(serde_json::json!({"source": {"inline": SOURCE}}));
        let a = prepare(&plain, SOURCE, &ModelSettings::default()).expect("valid");
        assert!(a.resources.is_none());
        let sized = feature(serde_json::json!({
            "source": {"inline": SOURCE},
            "resources": {"limits": {"memory": "1Gi"}}
        }));
        let b = prepare(&sized, SOURCE, &ModelSettings::default()).expect("valid");
        let limits = b
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["memory"].0, "1Gi");
        assert_ne!(
            a.config_hash, b.config_hash,
            "a resources change rolls the pods"
        );
    }

    #[test]
    fn fallbacks_and_their_cooldown_change_the_hash() {
        let plain = feature(serde_json::json!({"source": {"inline": SOURCE}}));
        let base = ModelSettings::default();
        let a = prepare(&plain, SOURCE, &base).expect("valid").config_hash;
        let fallback = eol_core::crd::ModelFallbackSpec {
            base_url: "http://backup/v1".into(),
            name: "backup".into(),
            api_key_secret_ref: None,
        };
        let with_fallback = ModelSettings {
            fallbacks: vec![fallback.clone()],
            ..base.clone()
        };
        let b = prepare(&plain, SOURCE, &with_fallback)
            .expect("valid")
            .config_hash;
        assert_ne!(a, b, "a fallback rolls the pods");
        let keyed = ModelSettings {
            fallbacks: vec![eol_core::crd::ModelFallbackSpec {
                api_key_secret_ref: Some(eol_core::crd::KeyRef {
                    name: "backup".into(),
                    key: "token".into(),
                }),
                ..fallback
            }],
            ..base.clone()
        };
        let c = prepare(&plain, SOURCE, &keyed).expect("valid").config_hash;
        assert_ne!(
            b, c,
            "its key Secret is mounted: changing it rolls the pods"
        );
        let cooled = ModelSettings {
            cooldown_seconds: Some(5),
            ..with_fallback
        };
        let d = prepare(&plain, SOURCE, &cooled).expect("valid").config_hash;
        assert_ne!(b, d, "the cooldown is in the pods' environment");
    }

    #[test]
    fn another_feature_referenced_by_name_is_a_document_named_after_it() {
        let source = TRIAGE.replace(
            "Never promise refunds;",
            "Stock is described in @feature:inventory. Never promise refunds;",
        );
        let f = feature(serde_json::json!({
            "source": {"inline": source},
            "documents": {"inventory.eol": SOURCE}
        }));
        let p = prepare(&f, &source, &ModelSettings::default()).expect("valid");
        assert!(p.documents.contains_key("inventory.eol"));

        // The runner reads it as a feature: it must be one.
        let broken = feature(serde_json::json!({
            "source": {"inline": source},
            "documents": {"inventory.eol": "---\nname: inventory\nphase: nope\n---\n"}
        }));
        let problem = prepare(&broken, &source, &ModelSettings::default()).expect_err("invalid");
        assert_eq!(problem.reason, "DocumentsInvalid");
        assert!(
            problem
                .message
                .starts_with("Feature shop/inventory spec.documents[\"inventory.eol\"]:3:"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn documents_the_feature_does_not_reference_or_that_leave_its_directory_are_refused() {
        for (path, why) in [
            (
                "docs/other.md",
                "not referenced by the feature, which references docs/refund-policy.md",
            ),
            ("../etc/passwd", "not a plain relative path"),
            ("/etc/passwd", "not a plain relative path"),
            ("docs//refund-policy.md", "not a plain relative path"),
            ("feature.eol", "the name of one of the pod's own files"),
            ("document-3", "the name of one of the pod's own files"),
        ] {
            let f = feature(serde_json::json!({
                "source": {"inline": TRIAGE},
                "documents": {path: "text"}
            }));
            let problem = prepare(&f, TRIAGE, &ModelSettings::default()).expect_err(path);
            assert_eq!(problem.reason, "DocumentsInvalid");
            assert!(
                problem.message.starts_with(&format!(
                    "Feature shop/inventory spec.documents[{path:?}]: {why}"
                )),
                "{}",
                problem.message
            );
        }
    }

    #[test]
    fn tests_that_name_unknown_operations_are_refused() {
        let f = feature(serde_json::json!({
            "source": {"inline": SOURCE},
            "tests": "---\nfeature: inventory\n---\n\n## a case\n\nOperation: no_such_op\n\nInput:\n```yaml\n{}\n```\n\nExpect:\n```yaml\n{}\n```\n"
        }));
        let problem = prepare(&f, SOURCE, &ModelSettings::default()).expect_err("invalid");
        assert_eq!(problem.reason, "TestsInvalid");
        assert!(
            problem.message.contains("spec.tests"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_shadowed_operation_the_source_lacks_is_refused_with_its_place() {
        let f = feature(serde_json::json!({
            "source": {"inline": SOURCE},
            "rollout": {"strategy": "Shadow", "shadow": {"operations": ["add_stock", "restock"]}}
        }));
        let problem = prepare(&f, SOURCE, &ModelSettings::default()).expect_err("invalid");
        assert_eq!(problem.reason, "RolloutInvalid");
        assert_eq!(
            problem.message,
            "Feature shop/inventory: spec.rollout.shadow.operations[1]: no operation 'restock' in the source (it has add_stock, stock_level, reserve)"
        );
    }

    #[test]
    fn canary_steps_that_do_not_increase_within_0_and_100_are_refused_with_their_place() {
        for (steps, why) in [
            (
                serde_json::json!([10, 10]),
                "steps[1] is 10 after 10: steps must increase",
            ),
            (
                serde_json::json!([50, 100]),
                "steps[1] is 100: each step must be above 0 and below 100",
            ),
            (
                serde_json::json!([]),
                "steps is empty: give at least one percentage",
            ),
        ] {
            let f = feature(serde_json::json!({
                "source": {"inline": SOURCE},
                "rollout": {"strategy": "Canary", "canary": {"steps": steps}}
            }));
            let problem = prepare(&f, SOURCE, &ModelSettings::default()).expect_err("invalid");
            assert_eq!(problem.reason, "RolloutInvalid");
            assert_eq!(
                problem.message,
                format!("Feature shop/inventory: spec.rollout.canary.{why}")
            );
        }
    }

    #[test]
    fn a_compare_rule_naming_an_unknown_field_is_a_located_parse_error() {
        let source = SOURCE.replacen(
            "required: [sku, level]\n```\n",
            "required: [sku, level]\n```\n\nCompare:\n```yaml\nfields: [sku, levle]\n```\n",
            1,
        );
        assert_ne!(
            source, SOURCE,
            "the fixture changed: no Output block to follow"
        );
        let f = feature(serde_json::json!({"source": {"inline": source}}));
        let problem = prepare(&f, &source, &ModelSettings::default()).expect_err("invalid");
        assert_eq!(problem.reason, "ParseError");
        assert!(
            problem
                .message
                .starts_with("Feature shop/inventory spec.source.inline:")
                && problem.message.contains(
                    "Compare 'fields' names 'levle', which is not a field of the Output schema"
                ),
            "{}",
            problem.message
        );
    }
}
