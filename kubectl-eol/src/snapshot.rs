//! Everything the tree of one Feature shows, read from the cluster in one go:
//! the Feature, the objects the operator made for it, and its last runs.

use crate::access::{RUNS, Target};
use crate::error::Error;
use eol_core::crd::{Feature, FeatureRun};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::ListParams;

/// One Feature and what belongs to it, at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The Feature.
    pub feature: Feature,
    /// Its configurations (one immutable ConfigMap each).
    pub config_maps: Vec<ConfigMap>,
    /// Its serving Deployment, and a shadow candidate's while one runs.
    pub deployments: Vec<Deployment>,
    /// The Deployments' ReplicaSets.
    pub replica_sets: Vec<ReplicaSet>,
    /// The serving and candidate pods.
    pub pods: Vec<Pod>,
    /// Its FeatureRuns, newest first.
    pub runs: Vec<FeatureRun>,
    /// Kinds the user may not list: the tree says so instead of showing them empty.
    pub denied: Vec<&'static str>,
}

/// The label every object of a Feature carries (`app.kubernetes.io/instance=<feature>`).
const INSTANCE: &str = "app.kubernetes.io/instance";

impl Snapshot {
    /// Reads Feature `name` and its objects. The Feature itself must be readable;
    /// children the user may not list are left out and named in `denied`.
    pub async fn read(target: &Target, name: &str) -> Result<Self, Error> {
        let feature = target.feature(name).await?;
        let children = ListParams::default().labels(&format!("{INSTANCE}={name}"));
        let mut denied = Vec::new();
        let config_maps = listed(target, &children, "configmaps", "ConfigMap", &mut denied).await?;
        let deployments = listed(
            target,
            &children,
            "deployments.apps",
            "Deployment",
            &mut denied,
        )
        .await?;
        let replica_sets = listed(
            target,
            &children,
            "replicasets.apps",
            "ReplicaSet",
            &mut denied,
        )
        .await?;
        let pods = listed(target, &children, "pods", "Pod", &mut denied).await?;
        let mut runs: Vec<FeatureRun> = match target.runs().list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|r| r.spec.feature_ref == name)
                .collect(),
            Err(e) => match target.request("list", RUNS, "FeatureRun", None).failed(e) {
                Error::Forbidden { .. } => {
                    denied.push(RUNS);
                    Vec::new()
                }
                other => return Err(other),
            },
        };
        runs.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| b.name_any().cmp(&a.name_any()))
        });
        Ok(Self {
            feature,
            config_maps,
            deployments,
            replica_sets,
            pods,
            runs,
            denied,
        })
    }
}

/// Lists `K` with `params`; a 403 is recorded in `denied` instead of failing the tree.
async fn listed<K>(
    target: &Target,
    params: &ListParams,
    resource: &'static str,
    kind: &'static str,
    denied: &mut Vec<&'static str>,
) -> Result<Vec<K>, Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    match target.api::<K>().list(params).await {
        Ok(list) => Ok(list.items),
        Err(e) => match target.request("list", resource, kind, None).failed(e) {
            Error::Forbidden { .. } => {
                denied.push(resource);
                Ok(Vec::new())
            }
            other => Err(other),
        },
    }
}
