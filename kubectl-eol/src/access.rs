//! The connection a command works through: the user's own kubeconfig (as
//! kubectl reads it: `KUBECONFIG`, else `~/.kube/config`), so the plugin has
//! exactly the user's RBAC and no credentials of its own.

use crate::error::{Error, Request};
use eol_core::crd::{Feature, FeatureRun};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client and the namespace the command works in.
#[derive(Clone)]
pub struct Target {
    /// The API client, as the kubeconfig's user.
    pub client: Client,
    /// `--namespace`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The API server's URL, for errors.
    pub server: String,
    /// The kubeconfig context in use (`in-cluster` without a kubeconfig), for errors.
    pub context: String,
}

impl Target {
    /// Connects as `context` (default: the current context) of the user's kubeconfig.
    pub async fn connect(context: Option<&str>, namespace: Option<&str>) -> Result<Self, Error> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        // In a pod without a kubeconfig, the pod's service account (as kubectl does).
        let (config, context) = match Kubeconfig::read() {
            Ok(kubeconfig) => {
                let context = context
                    .map(str::to_owned)
                    .or_else(|| kubeconfig.current_context.clone())
                    .unwrap_or_default();
                let config = Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| Error::Config(e.to_string()))?;
                (config, context)
            }
            Err(read) => {
                let config = Config::incluster().map_err(|_| {
                    Error::Config(format!(
                        "{read} (set KUBECONFIG, or run `kubectl config view` to check it)"
                    ))
                })?;
                (config, "in-cluster".to_owned())
            }
        };
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            client,
            namespace,
            server,
            context,
        })
    }

    /// The Features of the namespace.
    pub fn features(&self) -> Api<Feature> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The FeatureRuns of the namespace.
    pub fn runs(&self) -> Api<FeatureRun> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Any namespaced kind of the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A request on `resource` in this namespace, for error messages.
    pub fn request<'a>(
        &'a self,
        verb: &'static str,
        resource: &'static str,
        kind: &'static str,
        name: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            resource,
            kind,
            name,
            namespace: &self.namespace,
            server: &self.server,
            context: &self.context,
        }
    }

    /// Reads Feature `name`.
    pub async fn feature(&self, name: &str) -> Result<Feature, Error> {
        self.features().get(name).await.map_err(|e| {
            self.request("get", FEATURES, "Feature", Some(name))
                .failed(e)
        })
    }

    /// Reads FeatureRun `name`.
    pub async fn run(&self, name: &str) -> Result<FeatureRun, Error> {
        self.runs().get(name).await.map_err(|e| {
            self.request("get", RUNS, "FeatureRun", Some(name))
                .failed(e)
        })
    }
}

/// The Feature resource, as RBAC names it.
pub const FEATURES: &str = "features.eol.dev";
/// The FeatureRun resource, as RBAC names it.
pub const RUNS: &str = "featureruns.eol.dev";
