//! The prototyped path of one call, end to end: semantic-cache lookup, the
//! context budget, context selection, the model's answer, output validation,
//! then the recorded example and the semantic-cache entry it leaves behind.

use super::{CallOutput, CallTarget};
use crate::caches::{FeatureCaches, SemanticLookup};
use crate::context::References;
use crate::engine::ExecError;
use crate::examples::RecordedExamples;
use crate::prototype::{InKeyspace, PromptContext, PrototypeTrace, Prototyper, Tools};
use crate::store::Scope;
use serde_json::Value;

/// One call of an operation in the prototyping phase.
pub(crate) struct PrototypedCall<'a> {
    /// What is called, on which input.
    pub(crate) target: CallTarget<'a>,
    /// The model; without one the call fails with [`ExecError::NoModel`].
    pub(crate) model: Option<&'a Prototyper>,
    /// Tools the model may call first.
    pub(crate) tools: Option<&'a dyn Tools>,
    /// The keys the model's Redis tools may touch: the feature's, or a test run's.
    pub(crate) scope: &'a Scope,
    /// The semantic cache and the vector context.
    pub(crate) caches: &'a FeatureCaches,
    /// The feature's references: the context when the vector index gives none.
    pub(crate) references: &'a References,
    /// Where the answer is recorded as an example.
    pub(crate) examples: RecordedExamples<'a>,
    /// Whether the answer is recorded as an example and kept in the semantic
    /// cache (not for a shadow call: a candidate's answers are not the feature's).
    pub(crate) records: bool,
    /// Whether the semantic cache is asked first (not when checking one of
    /// its answers against the model).
    pub(crate) cached: bool,
}

impl PrototypedCall<'_> {
    /// A cached answer for an input that means the same, else the model's
    /// validated answer, recorded and cached.
    pub(crate) async fn run(self) -> Result<CallOutput, ExecError> {
        let model = self.model()?;
        let (op, input) = (self.target.op, self.target.input);
        let model_name = &model.client().settings().model;
        let lookup = if self.cached {
            self.caches
                .semantic_lookup(&op.name, model_name, input)
                .await
        } else {
            SemanticLookup::Miss(None, None)
        };
        let (prepared, unproven) = match lookup {
            SemanticLookup::Hit(answer, hit, check) => {
                let mut out = CallOutput::cached(self.target.checked(answer)?, hit);
                out.semantic_check = check;
                return Ok(out);
            }
            SemanticLookup::Miss(prepared, unproven) => (prepared, unproven),
        };
        // Checked only when the model would be asked: a cached answer costs nothing.
        if let Some(exceeded) = model.meter().over_budget(&op.name).await {
            return Err(ExecError::BudgetExceeded {
                feature: self.target.feature_name(),
                operation: op.name.clone(),
                summary: exceeded.summary,
                retry_after: exceeded.retry_after,
                on_exceeded: exceeded.on_exceeded,
            });
        }
        let cache_missed = prepared.is_some();
        let (answer, trace) = self.ask(model).await?;
        let output = self.target.checked(answer)?;
        // The unproven candidate is compared with the primary model's answer
        // only: a fallback model's answer says nothing of the entry's.
        let semantic_check = unproven
            .filter(|_| trace.model == *model_name)
            .map(|mut check| {
                check.fresh = Some(output.clone());
                check
            });
        if self.records {
            self.examples.record(&op.name, input, &output).await;
            // Lookups are by the primary model: a fallback's answer is not its.
            if trace.model == *model_name {
                self.caches
                    .semantic_store(&op.name, model_name, prepared.as_ref(), &output)
                    .await;
            }
        }
        Ok(CallOutput {
            output,
            stdout: String::new(),
            trace: Some(trace),
            cache: None,
            cache_missed,
            semantic_check,
        })
    }

    /// The model, or why the call cannot run without one.
    fn model(&self) -> Result<&Prototyper, ExecError> {
        self.model.ok_or_else(|| {
            let hint = if self.target.op.code.is_some() {
                " — or run it with --phase implementation, since it has code".to_owned()
            } else {
                String::new()
            };
            ExecError::NoModel {
                feature: self.target.feature_name(),
                operation: self.target.op.name.clone(),
                hint,
            }
        })
    }

    /// The model's answer with the context that fits what the spec and input
    /// leave of the window: chosen by the vector index, else ranked by shared words.
    async fn ask(&self, model: &Prototyper) -> Result<(Value, PrototypeTrace), ExecError> {
        let CallTarget {
            feature,
            op,
            schemas,
            input,
        } = self.target;
        let failed = |source| self.target.prototype_error(source);
        let budget = model.context_budget(feature, op, input).map_err(failed)?;
        let context = match self.caches.context(op, input, budget).await {
            Some(selected) => selected,
            None => PromptContext::Ranked(&self.references.docs),
        };
        let tools = self.tools.map(|tools| InKeyspace {
            tools,
            scope: self.scope,
        });
        let (answer, mut trace) = model
            .execute_with(
                feature,
                op,
                input,
                &schemas.output,
                tools.as_ref().map(|t| t as &dyn Tools),
                &context,
            )
            .await
            .map_err(failed)?;
        if let Some(missing) = self.references.unreadable_note() {
            trace.context_note = Some(match trace.context_note.take() {
                Some(note) => format!("{note}; {missing}"),
                None => missing,
            });
        }
        Ok((answer, trace))
    }
}
