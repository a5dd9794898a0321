//! The Feature's children in the API: the ConfigMap, Deployment and Service
//! applied with the operator's one field manager, a rollback, the ReplicaSets
//! (read at most once per reconcile), and the pruning of old ConfigMaps.

use super::children::{self, CONFIG_HASH};
use super::shadow;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{self, FIELD_MANAGER};
use crate::run::children as run_children;
use crate::source::Prepared;
use eol_core::crd::{Feature, FeatureStatus};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

/// The Feature's children in the API: applied with one field manager, and
/// their ReplicaSets read at most once per reconcile.
pub(super) struct Children<'a> {
    ctx: &'a Context,
    feature: &'a Feature,
    ns: &'a str,
    object: String,
}

impl<'a> Children<'a> {
    pub(super) fn new(ctx: &'a Context, feature: &'a Feature, ns: &'a str) -> Self {
        Self {
            ctx,
            feature,
            ns,
            object: format!("Feature {ns}/{}", feature.name_any()),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    /// Applies the configuration's ConfigMap, unless the cache knows it: it
    /// is immutable and named by its content's hash, so existing is enough.
    pub(super) async fn apply_config_map(&self, cm: &ConfigMap) -> Result<()> {
        if self.ctx.caches.config_map_exists(self.ns, &cm.name_any()) {
            return Ok(());
        }
        self.api::<ConfigMap>()
            .patch(&cm.name_any(), &apply(), &Patch::Apply(cm))
            .await
            .map_err(Error::kube("apply the source ConfigMap", &self.object))?;
        Ok(())
    }

    pub(super) async fn apply_deployment(&self, template: PodTemplateSpec) -> Result<Deployment> {
        self.deployment(template, "apply the Deployment").await
    }

    /// Applies the Deployment with the pod template of the last good configuration.
    pub(super) async fn roll_back(&self, template: PodTemplateSpec) -> Result<()> {
        self.deployment(template, "roll the Deployment back")
            .await?;
        Ok(())
    }

    /// Applies the Deployment, unless the cached one was applied from the same
    /// desired object (its [`APPLIED`] annotation): then that one is the
    /// answer, and a resync of an unchanged Feature writes nothing.
    async fn deployment(
        &self,
        template: PodTemplateSpec,
        action: &'static str,
    ) -> Result<Deployment> {
        let deployment = stamped(children::deployment(
            self.feature,
            template,
            &self.ctx.config,
        ));
        if let Some(cached) = self
            .ctx
            .caches
            .deployment(self.ns, &self.feature.name_any())
            && applied(cached.as_ref()) == applied(&deployment)
        {
            return Ok(Deployment::clone(&cached));
        }
        self.api::<Deployment>()
            .patch(
                &self.feature.name_any(),
                &apply(),
                &Patch::Apply(deployment),
            )
            .await
            .map_err(Error::kube(action, &self.object))
    }

    /// Applies the Service, unless the cached one carries the same [`APPLIED`] stamp.
    pub(super) async fn apply_service(&self) -> Result<()> {
        let service = stamped(children::service(self.feature));
        if let Some(cached) = self.ctx.caches.service(self.ns, &self.feature.name_any())
            && applied(cached.as_ref()) == applied(&service)
        {
            return Ok(());
        }
        self.api::<Service>()
            .patch(&self.feature.name_any(), &apply(), &Patch::Apply(service))
            .await
            .map_err(Error::kube("apply the Service", &self.object))?;
        Ok(())
    }

    /// Applies the Feature's HorizontalPodAutoscaler (`spec.autoscaling`),
    /// unless the one there carries the same stamp; deletes it once
    /// `spec.autoscaling` is gone (looked for only when the spec of a Feature
    /// seen before changed, so a resync reads nothing).
    pub(super) async fn apply_autoscaler(&self, previous: &FeatureStatus) -> Result<()> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let name = self.feature.name_any();
        let Some(hpa) = children::autoscaler(self.feature) else {
            // A new Feature has none yet; an unchanged spec kept what it had.
            let changed = previous
                .observed_generation
                .is_some_and(|seen| Some(seen) != self.feature.metadata.generation);
            if !changed {
                return Ok(());
            }
            let owned = api
                .get_opt(&name)
                .await
                .map_err(Error::kube(
                    "read the HorizontalPodAutoscaler",
                    &self.object,
                ))?
                .is_some_and(|hpa| {
                    hpa.owner_references()
                        .iter()
                        .any(|r| Some(&r.uid) == self.feature.metadata.uid.as_ref())
                });
            if owned {
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(Error::kube(
                        "delete the HorizontalPodAutoscaler",
                        &self.object,
                    ))?;
            }
            return Ok(());
        };
        let hpa = stamped(hpa);
        let current = api.get_opt(&name).await.map_err(Error::kube(
            "read the HorizontalPodAutoscaler",
            &self.object,
        ))?;
        if current.as_ref().and_then(applied) == applied(&hpa) {
            return Ok(());
        }
        api.patch(&name, &apply(), &Patch::Apply(hpa))
            .await
            .map_err(Error::kube(
                "apply the HorizontalPodAutoscaler",
                &self.object,
            ))?;
        Ok(())
    }

    /// Applies the shadow candidate's Deployment and Service (unless the
    /// cached ones carry the same [`APPLIED`] stamp); the Deployment as it is now.
    pub(super) async fn apply_candidate(
        &self,
        deployment: Deployment,
        service: Service,
    ) -> Result<Deployment> {
        let name = shadow::candidate_name(self.feature);
        let service = stamped(service);
        if self
            .ctx
            .caches
            .service(self.ns, &name)
            .is_none_or(|cached| applied(cached.as_ref()) != applied(&service))
        {
            self.api::<Service>()
                .patch(&name, &apply(), &Patch::Apply(service))
                .await
                .map_err(Error::kube(
                    "apply the shadow candidate's Service",
                    &self.object,
                ))?;
        }
        let deployment = stamped(deployment);
        if let Some(cached) = self.ctx.caches.deployment(self.ns, &name)
            && applied(cached.as_ref()) == applied(&deployment)
        {
            return Ok(Deployment::clone(&cached));
        }
        self.api::<Deployment>()
            .patch(&name, &apply(), &Patch::Apply(deployment))
            .await
            .map_err(Error::kube(
                "apply the shadow candidate's Deployment",
                &self.object,
            ))
    }

    /// Scales the shadow candidate's Deployment to 0 when the cache shows it
    /// running (a shadow ended, or the strategy changed). It and its Service
    /// stay, without pods, until the next shadow or the Feature's deletion:
    /// the operator's role has no `delete` on Deployments or Services.
    pub(super) async fn stop_candidate(&self) -> Result<()> {
        let name = shadow::candidate_name(self.feature);
        let running = self
            .ctx
            .caches
            .deployment(self.ns, &name)
            .is_some_and(|d| d.spec.as_ref().and_then(|s| s.replicas) != Some(0));
        if running {
            let patch = serde_json::json!({"spec": {"replicas": 0}});
            self.api::<Deployment>()
                .patch(
                    &name,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.to_owned()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(Error::kube(
                    "scale the shadow candidate's Deployment to 0",
                    &self.object,
                ))?;
        }
        Ok(())
    }

    /// The Deployment's ReplicaSets, listed on first use.
    pub(super) async fn replica_sets<'s>(
        &self,
        listed: &'s mut Option<Vec<ReplicaSet>>,
    ) -> Result<&'s [ReplicaSet]> {
        if listed.is_none() {
            let list = self
                .api::<ReplicaSet>()
                .list(
                    &ListParams::default()
                        .labels(&pod::selector_string(&children::selector(self.feature))),
                )
                .await
                .map_err(Error::kube("list the ReplicaSets", &self.object))?;
            *listed = Some(list.items);
        }
        Ok(listed.as_deref().unwrap_or_default())
    }

    /// Deletes the ConfigMaps of configurations no longer needed: all but the
    /// desired, the current and the last good one, and those a FeatureRun's
    /// pod that has not finished reads (it may not have started yet).
    pub(super) async fn prune(&self, status: &FeatureStatus, prepared: &Prepared) -> Result<()> {
        let keep = [
            Some(prepared.config_hash.as_str()),
            status.config.as_deref(),
            status.last_good_config.as_deref(),
        ];
        let cms = self.api::<ConfigMap>();
        let list = cms
            .list(
                &ListParams::default()
                    .labels(&pod::selector_string(&children::selector(self.feature))),
            )
            .await
            .map_err(Error::kube("list the source ConfigMaps", &self.object))?;
        for cm in list.items {
            let hash = cm.labels().get(CONFIG_HASH).cloned();
            let owned = cm
                .owner_references()
                .iter()
                .any(|r| Some(&r.uid) == self.feature.metadata.uid.as_ref());
            if owned && !keep.contains(&hash.as_deref()) && !self.read_by_a_run(hash.as_deref()) {
                cms.delete(&cm.name_any(), &DeleteParams::default())
                    .await
                    .map_err(Error::kube(
                        "delete an old source ConfigMap",
                        format!("{}/{}", self.ns, cm.name_any()),
                    ))?;
            }
        }
        Ok(())
    }

    /// Whether a runner pod of this Feature's runs that has not finished reads
    /// configuration `hash` (from the pod cache; only asked when pruning).
    fn read_by_a_run(&self, hash: Option<&str>) -> bool {
        let feature = self.feature.name_any();
        self.ctx.caches.run_pods.state().iter().any(|p| {
            let labels = p.labels();
            p.namespace().as_deref() == Some(self.ns)
                && labels.get(run_children::FEATURE_LABEL) == Some(&feature)
                && labels.get(run_children::CONFIG_LABEL).map(String::as_str) == hash
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
    }
}

/// The annotation holding the hash of the desired object an applied object
/// was applied from.
pub const APPLIED: &str = "eol.dev/applied";

/// `object` with its [`APPLIED`] stamp: the hash of the object without it.
fn stamped<K: Resource + serde::Serialize>(mut object: K) -> K {
    let hash = serde_json::to_vec(&object)
        .map(|bytes| crate::hash::hex(&bytes)[..16].to_owned())
        .unwrap_or_default();
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED.to_owned(), hash);
    object
}

/// The [`APPLIED`] stamp of `object`, if any.
fn applied<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(APPLIED)
        .map(String::as_str)
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The config hash a pod template runs.
pub(super) fn template_hash(template: &PodTemplateSpec) -> Option<String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH)
        .cloned()
}

/// The pod template that ran config `hash`, from the Deployment's ReplicaSets
/// (how `kubectl rollout undo` finds it).
pub(super) fn template_of(sets: &[ReplicaSet], hash: &str) -> Option<PodTemplateSpec> {
    sets.iter()
        .filter_map(|rs| rs.spec.as_ref()?.template.clone())
        .find(|t| template_hash(t).as_deref() == Some(hash))
        .map(|mut t| {
            if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove("pod-template-hash");
            }
            t
        })
}
