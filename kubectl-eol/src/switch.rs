//! `kubectl eol switch`: asks the operator for another phase. A whole-feature
//! switch sets `spec.phase`; an operation switch rewrites that operation's
//! `Phase:` line in the Feature's source and makes the feature hybrid. The
//! operator does the rest (a rolling update gated by the tests).

use crate::access::{FEATURES, Target};
use crate::args::SwitchArgs;
use crate::error::Error;
use crate::tree::condition;
use eol_core::Phase;
use eol_core::crd::Feature;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The field manager of the plugin's writes.
pub const FIELD_MANAGER: &str = "kubectl-eol";

/// The `PhaseSwitch` reasons that end a switch.
const ENDED: [&str; 3] = ["Complete", "Failed", "RolledBack"];

/// Asks for the switch; returns the Feature's generation that carries it.
pub async fn switch(target: &Target, args: &SwitchArgs) -> Result<i64, Error> {
    let feature = target.feature(&args.name).await?;
    let to = Phase::from(args.to);
    let patched = match &args.operation {
        None => patch_feature(target, &args.name, json!({"spec": {"phase": to}})).await?,
        Some(op) => switch_operation(target, &feature, op, to).await?,
    };
    Ok(patched.metadata.generation.unwrap_or_default())
}

async fn switch_operation(
    target: &Target,
    feature: &Feature,
    operation: &str,
    to: Phase,
) -> Result<Feature, Error> {
    let op_phase = to.forced().ok_or_else(|| {
        Error::Refused(
            "an operation switches to prototyping or implementation, not hybrid".to_owned(),
        )
    })?;
    let name = feature.name_any();
    let source = &feature.spec.source;
    let (text, origin) = match (&source.inline, &source.config_map_key_ref) {
        (Some(text), _) => (text.clone(), format!("Feature {name} spec.source.inline")),
        (None, Some(r)) => {
            let cm = target.api::<ConfigMap>().get(&r.name).await.map_err(|e| {
                target
                    .request("get", "configmaps", "ConfigMap", Some(&r.name))
                    .failed(e)
            })?;
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "ConfigMap {} in namespace {} has no key {} (Feature {name} spec.source.configMapKeyRef)",
                        r.name, target.namespace, r.key
                    ))
                })?;
            (text, format!("ConfigMap {} key {}", r.name, r.key))
        }
        (None, None) => {
            return Err(Error::Refused(format!(
                "Feature {name} has no source (spec.source.inline or configMapKeyRef)"
            )));
        }
    };
    let new_text = switched_source(&origin, &text, feature.spec.phase, operation, op_phase)?;
    match &source.config_map_key_ref {
        Some(r) if source.inline.is_none() => {
            target
                .api::<ConfigMap>()
                .patch(
                    &r.name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Merge(json!({"data": {&r.key: new_text}})),
                )
                .await
                .map_err(|e| {
                    target
                        .request("patch", "configmaps", "ConfigMap", Some(&r.name))
                        .failed(e)
                })?;
            patch_feature(target, &name, json!({"spec": {"phase": Phase::Hybrid}})).await
        }
        _ => {
            patch_feature(
                target,
                &name,
                json!({"spec": {"phase": Phase::Hybrid, "source": {"inline": new_text}}}),
            )
            .await
        }
    }
}

/// The source after switching `operation`: first as the operator serves it
/// (`spec.phase`, when set, overrides the file's), then with the operation moved.
pub fn switched_source(
    origin: &str,
    text: &str,
    spec_phase: Option<Phase>,
    operation: &str,
    to: eol_core::OperationPhase,
) -> Result<String, Error> {
    let parsed = eol_core::parse_feature(origin, text)
        .map_err(|d| Error::Refused(format!("the source in {origin} does not parse: {d}")))?;
    let served = match spec_phase {
        Some(p) if p != parsed.frontmatter.phase => {
            let text = eol_core::switch_feature(&parsed, p)
                .map_err(|why| Error::Refused(format!("{origin}: {why}")))?;
            eol_core::parse_feature(origin, &text)
                .map_err(|d| Error::Refused(format!("{origin}: {d}")))?
        }
        _ => parsed,
    };
    eol_core::switch_operation(&served, operation, to)
        .map_err(|why| Error::Refused(format!("{origin}: {why}")))
}

async fn patch_feature(
    target: &Target,
    name: &str,
    patch: serde_json::Value,
) -> Result<Feature, Error> {
    target
        .features()
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| {
            target
                .request("patch", FEATURES, "Feature", Some(name))
                .failed(e)
        })
}

/// How a switch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Whether the new phase serves.
    pub succeeded: bool,
    /// The `PhaseSwitch` reason and message, or why nothing had to switch.
    pub summary: String,
}

/// Whether the switch carried by `generation` has ended, as `feature`'s status says.
pub fn ended(feature: &Feature, generation: i64) -> Option<Ended> {
    let status = feature.status.as_ref()?;
    if status.observed_generation.unwrap_or(0) < generation {
        return None;
    }
    let switch = condition(&status.conditions, "PhaseSwitch");
    if let Some(c) = switch
        && c.observed_generation.unwrap_or(0) >= generation
        && ENDED.contains(&c.reason.as_str())
    {
        return Some(Ended {
            succeeded: c.reason == "Complete",
            summary: format!("{}: {}", c.reason, c.message),
        });
    }
    // A spec change that needed no new configuration starts no switch.
    let switching = switch.is_some_and(|c| !ENDED.contains(&c.reason.as_str()));
    let ready = condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");
    (!switching && ready && status.phase == status.desired_phase).then(|| Ended {
        succeeded: true,
        summary: format!(
            "serving in {} (nothing had to roll out)",
            status.phase.map(|p| p.to_string()).unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Fixtures are literals.

    use super::*;
    use eol_core::OperationPhase;

    const SOURCE: &str = "---
name: support
version: 1.0.0
phase: prototyping
---

# support

## Operations

### classify

Classify the ticket.

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
  label: {type: string}
required: [label]
```

```python
def classify(text):
    return {\"label\": \"bug\"}
```

### reply

Write a reply.

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
  reply: {type: string}
required: [reply]
```
";

    #[test]
    fn an_operation_switch_makes_the_source_hybrid_with_that_operation_moved() {
        let new = switched_source(
            "t",
            SOURCE,
            None,
            "classify",
            OperationPhase::Implementation,
        )
        .unwrap();
        let parsed = eol_core::parse_feature("t", &new).unwrap();
        assert_eq!(parsed.frontmatter.phase, Phase::Hybrid);
        let phase = |op: &str| parsed.operation(op).unwrap().phase;
        assert_eq!(phase("classify"), OperationPhase::Implementation);
        assert_eq!(phase("reply"), OperationPhase::Prototyping);
    }

    #[test]
    fn an_operation_without_code_cannot_switch_to_implementation_and_the_error_names_the_source() {
        let err = switched_source(
            "ConfigMap src key feature.eol",
            SOURCE,
            None,
            "reply",
            OperationPhase::Implementation,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("ConfigMap src key feature.eol: "), "{err}");
        assert!(err.contains("reply"), "{err}");
    }

    fn feature(status: serde_json::Value) -> Feature {
        serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "f", "generation": 3},
            "spec": {"source": {"inline": "x"}},
            "status": status
        }))
        .unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": "m",
               "lastTransitionTime": "2026-12-05T00:00:00Z", "observedGeneration": generation})
    }

    #[test]
    fn a_switch_ends_on_its_own_generations_complete_failed_or_rolled_back() {
        let status = |generation: i64, reason: &str| {
            json!({"observedGeneration": generation, "phase": "prototyping", "desiredPhase": "implementation",
                   "conditions": [cond("PhaseSwitch", "False", reason, generation), cond("Ready", "True", "Ready", generation)]})
        };
        assert_eq!(
            ended(&feature(status(2, "Complete")), 3),
            None,
            "an older generation's switch"
        );
        assert_eq!(ended(&feature(status(3, "Progressing")), 3), None);
        let done = ended(&feature(status(3, "Complete")), 3).unwrap();
        assert!(done.succeeded);
        let failed = ended(&feature(status(3, "RolledBack")), 3).unwrap();
        assert!(!failed.succeeded);
        assert_eq!(failed.summary, "RolledBack: m");
    }

    #[test]
    fn a_change_that_rolls_nothing_out_ends_once_ready_in_the_desired_phase() {
        let f = feature(
            json!({"observedGeneration": 3, "phase": "hybrid", "desiredPhase": "hybrid",
            "conditions": [cond("PhaseSwitch", "True", "Complete", 2), cond("Ready", "True", "Ready", 3)]}),
        );
        assert!(ended(&f, 3).unwrap().succeeded);
    }
}
