//! A Feature's source, from the Feature to what pods can serve: fetched (inline,
//! or from its ConfigMap), prepared ([`prepare`]: parsed in the desired phase,
//! tests and documents checked, hashed; pure), and its Python checked by the
//! sandbox's own static check ([`code`]). Both controllers load sources here.

pub mod code;
mod prepare;

pub use prepare::{OperationCode, Prepared, SpecProblem, prepare, reason};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::ModelSettings;
use eol_core::crd::Feature;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};

/// The `.eol` text: inline, or from the referenced ConfigMap key.
pub async fn fetch(ctx: &Context, feature: &Feature) -> Result<Result<String, SpecProblem>> {
    let ns = feature.namespace().unwrap_or_default();
    let source = &feature.spec.source;
    if let Some(text) = &source.inline {
        return Ok(Ok(text.clone()));
    }
    let Some(r) = &source.config_map_key_ref else {
        return Ok(Err(SpecProblem {
            reason: reason::SOURCE_NOT_FOUND,
            message: "spec.source has neither inline nor configMapKeyRef".to_owned(),
        }));
    };
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = cms.get_opt(&r.name).await.map_err(Error::kube(
        "read the source ConfigMap",
        format!("{ns}/{}", r.name),
    ))?;
    Ok(
        match cm.and_then(|cm| cm.data.and_then(|mut d| d.remove(&r.key))) {
            Some(text) => Ok(text),
            None => Err(SpecProblem {
                reason: reason::SOURCE_NOT_FOUND,
                message: format!(
                    "spec.source.configMapKeyRef: ConfigMap {ns}/{} has no key '{}' (or does not exist)",
                    r.name, r.key
                ),
            }),
        },
    )
}

/// A source that passed every check, and a note on what could not be checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The prepared source.
    pub prepared: Prepared,
    /// Why the Python was not checked, when it could not be (no interpreter):
    /// the pods check it again before it runs.
    pub unchecked: Option<String>,
}

/// Fetches, prepares and checks `feature`'s source: `Err(problem)` when it
/// cannot be served, with the reason and the located message.
pub async fn load(
    ctx: &Context,
    feature: &Feature,
    model: &ModelSettings,
) -> Result<Result<Loaded, SpecProblem>> {
    let text = match fetch(ctx, feature).await? {
        Ok(text) => text,
        Err(problem) => return Ok(Err(problem)),
    };
    let prepared = match prepare(feature, &text, model) {
        Ok(p) => p,
        Err(problem) => return Ok(Err(problem)),
    };
    Ok(match ctx.code_check.check(&prepared).await {
        code::Verdict::Passed => Ok(Loaded {
            prepared,
            unchecked: None,
        }),
        code::Verdict::Unchecked(why) => Ok(Loaded {
            prepared,
            unchecked: Some(why),
        }),
        code::Verdict::Failed(problem) => Err(problem),
    })
}
