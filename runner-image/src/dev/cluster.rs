//! Pushing each good save to a Feature on the cluster: a server-side apply
//! of the source key of the ConfigMap the Feature's `spec.source.configMapKeyRef`
//! names. The operator reads that ConfigMap when it reconciles the Feature
//! and rolls the change out, gated by its tests as any change is.

use eol_core::crd::{Feature as FeatureResource, KeyRef};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;

/// The field manager of `eol dev`'s applies: it owns the source key only, so
/// other keys of the ConfigMap and other managers' fields are left as they are.
pub const FIELD_MANAGER: &str = "eol-dev";

/// Why a save could not be pushed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("failed to connect to the cluster (kubeconfig or in-cluster settings): {0}")]
    Connect(#[source] Box<kube::Error>),
    /// The Feature could not be read.
    #[error("failed to read Feature '{name}' in namespace '{namespace}': {}", reason(.source))]
    ReadFeature {
        /// The Feature.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The API's error (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
    /// The Feature's source is inline: there is no ConfigMap to apply.
    #[error(
        "Feature '{name}' in namespace '{namespace}' has an inline source: --cluster needs a Feature whose spec.source is a configMapKeyRef, to apply each save to that ConfigMap"
    )]
    InlineSource {
        /// The Feature.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// The apply of the ConfigMap failed.
    #[error("failed to apply ConfigMap '{config_map}' in namespace '{namespace}' (the source of Feature '{feature}'): {}", reason(.source))]
    Apply {
        /// The ConfigMap.
        config_map: String,
        /// Its namespace.
        namespace: String,
        /// The Feature it is the source of.
        feature: String,
        /// The API's error (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
}

/// What the API's error means for the user: not found and forbidden said
/// plainly, with the API's own message.
fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 404 => {
            format!("not found (404): {}", status.message)
        }
        kube::Error::Api(status) if status.code == 403 => {
            format!(
                "forbidden (403): your user may not do this; ask for RBAC access. {}",
                status.message
            )
        }
        other => other.to_string(),
    }
}

/// A Feature on the cluster whose source `eol dev` replaces on each good save.
pub struct ClusterFeature {
    features: Api<FeatureResource>,
    config_maps: Api<ConfigMap>,
    name: String,
    namespace: String,
}

impl ClusterFeature {
    /// The Feature `name` in `namespace` (default: the kubeconfig's), checked
    /// now so that a wrong name or an inline source shows at start.
    pub async fn connect(name: &str, namespace: Option<&str>) -> Result<Self, ClusterError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| ClusterError::Connect(Box::new(e)))?;
        let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
        let target = Self {
            features: Api::namespaced(client.clone(), &namespace),
            config_maps: Api::namespaced(client, &namespace),
            name: name.to_owned(),
            namespace,
        };
        target.source_ref().await?;
        Ok(target)
    }

    /// The Feature's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Applies `source` to the Feature's source ConfigMap; returns its name
    /// and key. The Feature is read again each time: its reference may have changed.
    pub async fn push(&self, source: &str) -> Result<KeyRef, ClusterError> {
        let key_ref = self.source_ref().await?;
        let config_map = source_config_map(&self.namespace, &key_ref, source);
        self.config_maps
            .patch(
                &key_ref.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config_map),
            )
            .await
            .map_err(|source| ClusterError::Apply {
                config_map: key_ref.name.clone(),
                namespace: self.namespace.clone(),
                feature: self.name.clone(),
                source: Box::new(source),
            })?;
        Ok(key_ref)
    }

    /// The ConfigMap key the Feature reads its source from.
    async fn source_ref(&self) -> Result<KeyRef, ClusterError> {
        let feature =
            self.features
                .get(&self.name)
                .await
                .map_err(|source| ClusterError::ReadFeature {
                    name: self.name.clone(),
                    namespace: self.namespace.clone(),
                    source: Box::new(source),
                })?;
        source_ref_of(&feature, &self.namespace)
    }
}

/// `feature`'s `spec.source.configMapKeyRef`; an inline source is an error.
pub fn source_ref_of(feature: &FeatureResource, namespace: &str) -> Result<KeyRef, ClusterError> {
    feature
        .spec
        .source
        .config_map_key_ref
        .clone()
        .ok_or_else(|| ClusterError::InlineSource {
            name: feature.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_owned(),
        })
}

/// The apply object: the ConfigMap `key_ref` names, with `source` under its
/// key and nothing else (fields not in it stay as other managers left them).
pub fn source_config_map(namespace: &str, key_ref: &KeyRef, source: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(key_ref.name.clone()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key_ref.key.clone(), source.to_owned())])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::crd::{FeatureSource, FeatureSpec};

    fn feature(source: FeatureSource) -> FeatureResource {
        let spec: FeatureSpec = serde_json::from_value(serde_json::json!({
            "source": serde_json::to_value(source).expect("serialisable"),
        }))
        .expect("a Feature spec");
        FeatureResource::new("inventory", spec)
    }

    #[test]
    fn the_apply_object_holds_only_the_source_under_the_referenced_key() {
        let key_ref = KeyRef {
            name: "inventory-src".into(),
            key: "inventory.eol".into(),
        };
        let cm = source_config_map("shop", &key_ref, "---\nname: inventory\n");
        assert_eq!(
            serde_json::to_value(&cm).expect("serialisable"),
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "inventory-src", "namespace": "shop"},
                "data": {"inventory.eol": "---\nname: inventory\n"},
            })
        );
    }

    #[test]
    fn a_feature_with_an_inline_source_is_refused_naming_it_and_its_namespace() {
        let inline = feature(FeatureSource {
            inline: Some("---".into()),
            config_map_key_ref: None,
        });
        let error = source_ref_of(&inline, "shop").expect_err("inline has no ConfigMap");
        let message = error.to_string();
        assert!(
            message.contains("Feature 'inventory' in namespace 'shop'")
                && message.contains("configMapKeyRef"),
            "{message}"
        );
        let key_ref = KeyRef {
            name: "src".into(),
            key: "f.eol".into(),
        };
        let referenced = feature(FeatureSource {
            inline: None,
            config_map_key_ref: Some(key_ref.clone()),
        });
        assert_eq!(source_ref_of(&referenced, "shop").ok(), Some(key_ref));
    }

    #[test]
    fn forbidden_and_not_found_are_said_plainly() {
        let status = |code: u16, message: &str| {
            Box::new(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..kube::core::Status::default()
            })))
        };
        let forbidden = ClusterError::Apply {
            config_map: "inventory-src".into(),
            namespace: "shop".into(),
            feature: "inventory".into(),
            source: status(403, "configmaps \"inventory-src\" is forbidden"),
        };
        assert_eq!(
            forbidden.to_string(),
            "failed to apply ConfigMap 'inventory-src' in namespace 'shop' (the source of Feature 'inventory'): forbidden (403): your user may not do this; ask for RBAC access. configmaps \"inventory-src\" is forbidden"
        );
        let missing = ClusterError::ReadFeature {
            name: "inventory".into(),
            namespace: "shop".into(),
            source: status(404, "features.eol.dev \"inventory\" not found"),
        };
        assert_eq!(
            missing.to_string(),
            "failed to read Feature 'inventory' in namespace 'shop': not found (404): features.eol.dev \"inventory\" not found"
        );
    }
}
