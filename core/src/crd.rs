//! The Kubernetes API of EOL: the `Feature` and `FeatureRun` custom resources
//! (`eol.dev/v1alpha1`). Types only: the operator owns the client side.
//!
//! Every field's `///` doc becomes its `kubectl explain` text.

use crate::Phase;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A feature: an `.eol` source served by a Deployment of `eol serve` pods.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eol.dev",
    version = "v1alpha1",
    kind = "Feature",
    namespaced,
    status = "FeatureStatus",
    // `/scale`: a HorizontalPodAutoscaler or a KEDA ScaledObject can target a Feature.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    shortname = "feat",
    category = "eol",
    cel,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"The phase the feature serves in (or rolls out to, before any pod served)"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".status.desiredPhase","priority":1,"description":"The desired phase: spec.phase, else the source's"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas","description":"Ready replicas"}"#,
    printcolumn = r#"{"name":"Agreement","type":"string","jsonPath":".status.shadow.agreement","description":"A shadow switch's agreement and samples"}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.shadow.canary.progress","priority":1,"description":"A canary switch's share of live calls and error rate"}"#,
    printcolumn = r#"{"name":"Cost-1d","type":"number","jsonPath":".status.usage.lastDay.cost","priority":1,"description":"Model cost of the last day, USD"}"#,
    printcolumn = r#"{"name":"Budget","type":"string","jsonPath":".status.usage.budget.summary","description":"The budget's window: spent of the limit"}"#,
    printcolumn = r#"{"name":"Anonymous","type":"boolean","jsonPath":".spec.access.anonymous","priority":1,"description":"Whether the feature answers callers without checking their Kubernetes identity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSpec {
    /// The feature's `.eol` source: inline text, or a ConfigMap key holding it.
    pub source: FeatureSource,
    /// The feature's tests (the `.test.eol` text). New pods serve traffic only once these pass in the serving phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// Documents the feature references (`@docs/policy.md` in its prose, or its frontmatter `context:` list), keyed by the path it references them with, and other features it references (`@feature:orders`) as `orders.eol`; runner pods find them beside the feature file, for the model's context. Each must be referenced. Source, tests and documents share one ConfigMap, so together they must stay under 1 MiB.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub documents: BTreeMap<String, String>,
    /// CPU and memory of each runner pod, serving or running a FeatureRun. Default: the operator's (`--runner-resources`; requests of 100m CPU and 256Mi memory, no limits, unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The phase to serve in. Changing it is a phase switch: a rolling update gated by the tests. Default: the phase in the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Pods serving the feature.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 100").message("replicas must be between 0 and 100"))]
    pub replicas: i32,
    /// Model settings for prototyped operations; unset fields fall back to the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// A limit on what prototyped calls spend per hour, day or month, over the source's frontmatter `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::cost::Budget>,
    /// How a change of phase or source rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// Node labels every runner pod (serving, or running a FeatureRun) must match, as a pod's `nodeSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints every runner pod tolerates, as a pod's `tolerations`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// Finished FeatureRuns of this feature that succeeded to keep; older ones are deleted (as CronJob's `successfulJobsHistoryLimit`). Default: all are kept (until their `ttlSecondsAfterFinished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("successfulRunsHistoryLimit must not be negative"))]
    pub successful_runs_history_limit: Option<i32>,
    /// Finished FeatureRuns of this feature that failed (failed, timed out, cancelled or invalid) to keep; older ones are deleted. Default: all are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("failedRunsHistoryLimit must not be negative"))]
    pub failed_runs_history_limit: Option<i32>,
    /// Who may call the feature's operations. Default: callers present a Kubernetes bearer token, and RBAC decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessSpec>,
    /// The audit record of each call (stdout always; a Redis stream when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSpec>,
    /// A HorizontalPodAutoscaler the operator keeps for the feature, scaling `replicas` on the serving pods' CPU through the Feature's `/scale`. Unset: `replicas` is left to you (or to your own HPA or KEDA ScaledObject on `/scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Async calls (`Prefer: respond-async`): queued on the Redis stream `eol-queue:<feature>` and answered by every serving pod through one consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSpec>,
}

/// The bounds and target of a Feature's HorizontalPodAutoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not be above maxReplicas"))]
pub struct AutoscalingSpec {
    /// The fewest serving pods. Default 1.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("minReplicas must be at least 1"))]
    pub min_replicas: i32,
    /// The most serving pods.
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 100").message("maxReplicas must be between 1 and 100"))]
    pub max_replicas: i32,
    /// The average CPU use of the serving pods to keep, as a percentage of their CPU request (`spec.resources`). Default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("cpuUtilization must be at least 1"))]
    pub cpu_utilization: Option<i32>,
    /// Seconds the load must stay low before pods are removed (the HPA's scale-down stabilization window). Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 3600").message("scaleDownStabilizationSeconds must be between 0 and 3600"))]
    pub scale_down_stabilization_seconds: Option<i32>,
}

/// How a Feature's async calls are queued and answered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// The most async calls accepted and not yet answered, over every pod; more are refused with 429 and `Retry-After`. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("maxLength must be at least 1"))]
    pub max_length: Option<i64>,
    /// Queued calls each serving pod runs at once. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 64").message("concurrency must be between 1 and 64"))]
    pub concurrency: Option<i32>,
    /// Seconds after which a call whose pod stopped renewing its claim (the pod died) is taken over by another pod and run again. Pods renew every third of it while they run a call. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 3600").message("claimAfterSeconds must be between 1 and 3600"))]
    pub claim_after_seconds: Option<i32>,
    /// Seconds a result (and the idempotency key that led to it) is kept for `GET /v1/results/{id}`. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("resultTTLSeconds must be at least 1"))]
    #[serde(rename = "resultTTLSeconds")]
    pub result_ttl_seconds: Option<i64>,
}

/// Who may call a Feature's operations: Kubernetes identities and RBAC, unless anonymous.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Answer every caller that reaches the Service, unchecked. Default false: a caller presents a Kubernetes bearer token (`Authorization: Bearer`, a ServiceAccount or projected token) that the pod checks with a TokenReview, and needs RBAC verb `invoke` on `features/operations` in the Feature's namespace (group `eol.dev`), with resource name the Feature's (every operation) or `<feature>/<operation>` (that one), checked with a SubjectAccessReview.
    #[serde(default)]
    pub anonymous: bool,
    /// The audiences a caller's token must be issued for (any one of them), as in `kubectl create token --audience`. Default: `eol.dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// How long each pod keeps a token's review and access decisions, in seconds. Default 10; 0 reviews every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 3600").message("reviewCacheSeconds must be between 0 and 3600"))]
    pub review_cache_seconds: Option<i32>,
    /// The most reviews each pod keeps (the least recently used go first). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("reviewCacheSize must be at least 1"))]
    pub review_cache_size: Option<i32>,
    /// While the API server cannot be reached (a restart, an upgrade), a caller whose token and access a pod reviewed within this many seconds is still answered with that review, as the API server's own webhook token cache does; a revoked token keeps working that long only during such an outage. Default 300; 0 answers 503 `auth_unavailable` once `reviewCacheSeconds` has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 86400").message("reviewStaleSeconds must be between 0 and 86400"))]
    pub review_stale_seconds: Option<i32>,
}

/// The audit record every call leaves: who (user, groups), the operation, the phase, the outcome, the duration, the input's SHA-256 and the trace id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// Also append each record (field `record`, its JSON) to the Redis stream `eol-audit:<feature>`, which the feature's own code cannot write to, trimmed to about this many of the newest records. Default: stdout only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("streamMaxLength must be at least 1"))]
    pub stream_max_length: Option<i64>,
    /// Keep the call's input itself in its record, not only its SHA-256. Default false.
    #[serde(default)]
    pub include_input: bool,
}

fn default_replicas() -> i32 {
    1
}

/// Where the `.eol` source comes from: exactly one of `inline` or `configMapKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(cel, validation = kube::core::Rule::new("has(self.inline) != has(self.configMapKeyRef)").message("set exactly one of inline or configMapKeyRef"))]
pub struct FeatureSource {
    /// The `.eol` text itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A key of a ConfigMap in the Feature's namespace holding the `.eol` text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a ConfigMap or Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The key within it.
    pub key: String,
}

/// Model settings for a Feature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Base URL of an OpenAI-compatible API, e.g. `http://llm.models.svc:8080/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Model name as the API knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Secret key holding the API key (it is never put in a plain environment value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<KeyRef>,
    /// Prices by model name (USD per million input and output tokens), over the
    /// operator's table: runs and `status.usage` report cost with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: crate::cost::PriceTable,
    /// Models asked, in order, while the one before is failing (5xx, 429, timeouts, unreachable, after its own retries); over the source's frontmatter `model.fallbacks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<ModelFallbackSpec>,
    /// Seconds a failing model is left alone before it is asked again (default: the frontmatter's `model.cooldown`, else 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("cooldownSeconds must not be negative"))]
    pub cooldown_seconds: Option<i32>,
}

/// A model asked when the ones before it are failing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelFallbackSpec {
    /// Base URL of its OpenAI-compatible API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model name as that API knows it.
    pub name: String,
    /// The Secret key holding its API key (mounted as a file, never put in a plain environment value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<KeyRef>,
}

/// How a phase switch rolls out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Seconds the new pods have to become Ready (their tests pass) before the switch is reported Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Return to the last phase that served, when a switch fails.
    #[serde(default)]
    pub auto_rollback: bool,
    /// How a new configuration replaces the serving one: `Rolling` (default; a rolling update gated by the tests), `Shadow` (the new configuration first runs beside the serving one on a copy of live traffic, and is promoted only when its outputs agree) or `Canary` (a shadow whose candidate also answers a growing share of the live calls, gated on agreement and on its error rate).
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Settings of the `Shadow` strategy, and the agreement gates of the `Canary` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    /// Settings of the `Canary` strategy: its steps and its error gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
}

/// How a new configuration replaces the serving one.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum RolloutStrategy {
    /// A rolling update: new pods replace old ones once their tests pass.
    #[default]
    Rolling,
    /// The new configuration runs as candidate pods of its own; the serving pods copy a sample of their calls to it, off the response path, and the switch is promoted (then rolled out) only when the candidate agrees on at least `minAgreement` percent of at least `minSamples` samples within `window`. Otherwise it is held (`PhaseSwitch=False`, reason `Disagreement`) and the old configuration keeps serving. The first rollout of a Feature, with nothing serving yet, is a rolling one.
    Shadow,
    /// A shadow (same candidate pods, same sampling and agreement gates under `shadow`) whose candidate also answers live calls: the serving pods forward `canary.steps[i]` percent of the calls of the operations shadowed to it and return its answer, one step after another, each held for at least `stepDuration` and `minRequests` forwarded calls. A call the candidate fails is answered by the serving pod instead, and counted against it: when more than `maxErrorPercent` of the forwarded calls failed, or the agreement falls below `minAgreement`, the canary is rolled back (`PhaseSwitch=False`, reason `CanaryErrors` or `Disagreement`) and the old configuration serves every call again. After the last step, with the agreement gate met, the switch is promoted and rolls out. No service mesh is needed.
    Canary,
}

/// Settings of a canary switch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The candidate's share of the live calls at each step, in percent, increasing (each above 0 and below 100).
    #[serde(default = "default_canary_steps")]
    #[schemars(length(min = 1, max = 10))]
    #[x_kube(validation = kube::core::Rule::new("self.all(s, s > 0.0 && s < 100.0) && self.isSorted()").message("steps must be increasing percentages above 0 and below 100"))]
    pub steps: Vec<f64>,
    /// The least time at each step (a Go duration such as `30s`, `5m`).
    #[serde(default = "default_step_duration")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9]+(s|m|h)$')").message("stepDuration must be a number followed by s, m or h, e.g. 1m"))]
    pub step_duration: String,
    /// The least number of live calls forwarded to the candidate at each step before the next one.
    #[serde(default = "default_min_requests")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("minRequests must be at least 1"))]
    pub min_requests: i64,
    /// The largest share of forwarded calls the candidate may fail (a 5xx or no answer within `shadow.timeoutSeconds`), in percent; above it, once `minRequests` calls were forwarded, the canary is rolled back.
    #[serde(default = "default_max_error_percent")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0.0 && self <= 100.0").message("maxErrorPercent must be between 0 and 100"))]
    pub max_error_percent: f64,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            steps: default_canary_steps(),
            step_duration: default_step_duration(),
            min_requests: default_min_requests(),
            max_error_percent: default_max_error_percent(),
        }
    }
}

fn default_canary_steps() -> Vec<f64> {
    vec![10.0, 50.0]
}
fn default_step_duration() -> String {
    "1m".to_owned()
}
fn default_min_requests() -> i64 {
    20
}
fn default_max_error_percent() -> f64 {
    1.0
}

/// Settings of a shadow switch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    /// Share of the serving calls copied to the candidate, in percent.
    #[serde(default = "default_sample_percent")]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0 && self <= 100.0").message("samplePercent must be above 0 and at most 100"))]
    pub sample_percent: f64,
    /// Agreement, in percent of the samples, needed to promote the candidate (per operation shadowed, and overall).
    #[serde(default = "default_min_agreement")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0.0 && self <= 100.0").message("minAgreement must be between 0 and 100"))]
    pub min_agreement: f64,
    /// Samples needed before a verdict; the decision is taken as soon as there are this many.
    #[serde(default = "default_min_samples")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("minSamples must be at least 1"))]
    pub min_samples: i64,
    /// How long the shadow may take to gather `minSamples`, from the moment the candidate is ready (a Go duration such as `30s`, `10m`, `1h`); without enough samples by then the switch is held.
    #[serde(default = "default_window")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9]+(s|m|h)$')").message("window must be a number followed by s, m or h, e.g. 10m"))]
    pub window: String,
    /// Operations to shadow. Default: those whose phase the switch changes, or every operation when none does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// Bytes of each sampled input and output shown in the status (the samples themselves stay in the feature's Redis for a day).
    #[serde(default = "default_preview_bytes")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 4096").message("previewBytes must be between 0 and 4096"))]
    pub preview_bytes: i64,
    /// Show no input or output in the status or events, only the fields that differ.
    #[serde(default)]
    pub redact_inputs: bool,
    /// Seconds a serving pod waits for the candidate's answer; a candidate slower than this counts as disagreeing.
    #[serde(default = "default_shadow_timeout")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 600").message("timeoutSeconds must be between 1 and 600"))]
    pub timeout_seconds: i64,
}

impl Default for ShadowSpec {
    fn default() -> Self {
        Self {
            sample_percent: default_sample_percent(),
            min_agreement: default_min_agreement(),
            min_samples: default_min_samples(),
            window: default_window(),
            operations: Vec::new(),
            preview_bytes: default_preview_bytes(),
            redact_inputs: false,
            timeout_seconds: default_shadow_timeout(),
        }
    }
}

fn default_sample_percent() -> f64 {
    10.0
}
fn default_min_agreement() -> f64 {
    99.0
}
fn default_min_samples() -> i64 {
    100
}
fn default_window() -> String {
    "1h".to_owned()
}
fn default_preview_bytes() -> i64 {
    256
}
fn default_shadow_timeout() -> i64 {
    30
}

/// Where a shadow switch stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// The candidate configuration.
    pub candidate: String,
    /// The shadow's id: where its verdicts are kept in Redis.
    pub id: String,
    /// When the candidate pods became ready and sampling began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// `Starting`, `Sampling`, `Promoted`, `Held` or `Failed`.
    pub state: String,
    /// Agreement over every operation shadowed, with the number of samples (`97.5% of 40`), for `kubectl get features`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Counts per operation shadowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<ShadowOperationStatus>,
    /// The newest disagreements (at most 5 per operation), inputs shown as truncated previews unless redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<crate::shadow::Disagreement>,
    /// Where a canary switch stands (strategy `Canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
}

/// Where a canary switch stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The step in force (0-based index into `spec.rollout.canary.steps`).
    pub step: i32,
    /// The candidate's share of the live calls, in percent (0 once the canary ended).
    pub weight: f64,
    /// When the step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// Calls forwarded before the step began (those of the step are `routed` minus this).
    #[serde(default)]
    pub step_start_routed: i64,
    /// Live calls forwarded to the candidate, over every step.
    #[serde(default)]
    pub routed: i64,
    /// Of those, the calls it failed (answered by the serving pods instead).
    #[serde(default)]
    pub failed: i64,
    /// The share of live calls and the error rate (`50% of calls, 0.0% of 120 failed`), for `kubectl get features -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// The samples of one operation in a shadow switch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowOperationStatus {
    /// The operation.
    pub name: String,
    /// Samples compared.
    pub samples: i64,
    /// Samples on which the candidate agreed.
    pub agree: i64,
    /// Samples on which it disagreed.
    pub disagree: i64,
    /// Samples on which it failed or timed out (counted as disagreements).
    pub errors: i64,
    /// Agreement in percent, one decimal (`95.0`), when there are samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Live calls forwarded to a canary candidate.
    #[serde(default)]
    pub canary_routed: i64,
    /// Of those, the calls it failed.
    #[serde(default)]
    pub canary_failed: i64,
}

/// What the operator observed of a Feature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The phase the feature serves in: that of the last configuration whose pods all became Ready, or, before any did, the phase its first rollout brings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The desired phase: `spec.phase`, or the phase written in the source when that is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_phase: Option<Phase>,
    /// The phase of each operation, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operation_phases: BTreeMap<String, String>,
    /// Pods ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Serving pods, ready or not (the `/scale` subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,
    /// The label selector of the serving pods, as a string (the `/scale` subresource's selector, for autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The configuration (hash of source, tests, phase and model settings) the Deployment runs or rolls out to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The last configuration whose pods all became Ready; a rollback returns to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_config: Option<String>,
    /// A configuration whose rollout failed and was rolled back; it is not retried until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_config: Option<String>,
    /// The shadow or canary switch in progress, or the last one (strategy `Shadow` or `Canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// Model use of the last hour and day, summed over every replica (prototyped calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageStatus>,
    /// Ready, SpecValid, ModelConfigured and PhaseSwitch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A Feature's model use, as its pods counted it in Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageStatus {
    /// The totals of the last hour and day.
    #[serde(flatten)]
    pub usage: crate::cost::FeatureUsage,
    /// When the operator last read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// One run of a feature: an operation with an input, or its tests, in a runner pod per attempt.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eol.dev",
    version = "v1alpha1",
    kind = "FeatureRun",
    namespaced,
    status = "FeatureRunStatus",
    shortname = "fr",
    category = "eol",
    cel,
    printcolumn = r#"{"name":"Feature","type":"string","jsonPath":".spec.featureRef"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].reason"}"#,
    printcolumn = r#"{"name":"Passed","type":"integer","jsonPath":".status.summary.testsPassed"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.summary.testsFailed"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.summary.duration"}"#,
    printcolumn = r#"{"name":"Tokens","type":"integer","jsonPath":".status.summary.tokens","priority":1,"description":"Model tokens the run used"}"#,
    printcolumn = r#"{"name":"Cost","type":"number","jsonPath":".status.summary.cost","priority":1,"description":"What the run's model calls cost, USD"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("has(self.operation) != has(self.tests) || (has(self.tests) && !self.tests && has(self.operation))").message("set either operation (with input) or tests: true"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.mode) || self.mode == 'Pod' || (has(self.operation) && !has(self.phase))").message("mode Queue runs one operation in the serving pods' phase: set operation, not tests or phase"))]
#[serde(rename_all = "camelCase")]
pub struct FeatureRunSpec {
    /// The Feature to run, in the same namespace. It cannot change once set.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("featureRef is immutable"))]
    pub feature_ref: String,
    /// The operation to run (with `input`); or set `tests: true` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The operation's input, a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub input: Option<serde_json::Value>,
    /// Run the feature's tests instead of one operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<bool>,
    /// The phase to run in. Default: the Feature's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Seconds the run may take, over all its attempts, before it ends TimedOut (each pod's activeDeadlineSeconds is what is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0").message("timeoutSeconds must be positive"))]
    pub timeout_seconds: Option<i64>,
    /// Retries of a failed runner pod: each retry is a new pod, `<run>-2`, `<run>-3`, ... (as a Job's backoffLimit).
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 10").message("retries must be between 0 and 10"))]
    pub retries: i32,
    /// Set to true to cancel the run; it ends Cancelled.
    #[serde(default)]
    pub cancel: bool,
    /// Seconds a finished run's pods are kept before they are deleted (the FeatureRun itself stays; see the Feature's history limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// How the run runs. `Pod` (the default): a runner pod of its own. `Queue`: the operation is queued on the Feature's async-call stream and answered by its serving pods, with no pod per run (for high run rates); it needs serving pods (replicas above 0), runs in their phase, and a pod that dies running it hands it to another (so it may run twice). `retries` does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RunMode>,
}

/// How a FeatureRun runs.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum RunMode {
    /// A runner pod of its own.
    #[default]
    Pod,
    /// An async call answered by the Feature's serving pods.
    Queue,
}

/// What the operator observed of a FeatureRun (Tekton style: a `Succeeded` condition).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureRunStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The phase the run used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Succeeded`: Unknown while running (reasons Pending, Running), True (Succeeded), or False
    /// (Failed, Evicted, TimedOut, Cancelled, SpecInvalid, FeatureNotFound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the runner pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The async call the run queued (mode Queue): `GET /v1/results/{callId}` of the Feature's Service has its record too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// What the run produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
}

/// The summary a runner reports through its termination message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The operation's output (operation runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub output: Option<serde_json::Value>,
    /// Test cases that passed (test runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_passed: Option<i32>,
    /// Test cases that failed (test runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_failed: Option<i32>,
    /// Model tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// Prompt (input) tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    /// Completion (output) tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    /// The model(s) that answered the run's model calls, e.g. `gpt-4o-mini`, or `a, b` when a fallback answered too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What the model calls cost, in USD (absent when the model has no price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// How long the run took, e.g. `1.8s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// True when `output` was too large for the termination message and was left out; the full output is under `resultKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_truncated: Option<bool>,
    /// The Redis key holding the run's full result (outputs, every test case, traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
}

/// What a runner pod writes to its termination message (at most 4096 bytes):
/// the run's summary, and why it failed when it did. Not part of the CRDs: the
/// contract between `eol run`/`eol test` and the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The summary, as the FeatureRun status shows it.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Why the run failed (an error, or failing tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's stable kind (e.g. `invalid_input`, `llm`, `redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
}

/// The largest termination message the kubelet keeps.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

impl RunReport {
    /// The report as JSON of at most [`TERMINATION_MESSAGE_LIMIT`] bytes: an
    /// output that does not fit is left out (`outputTruncated`), then a long
    /// error is shortened, so the operator always gets parseable JSON.
    pub fn to_termination_message(&self) -> String {
        let fits = |r: &RunReport| {
            serde_json::to_string(r)
                .ok()
                .filter(|s| s.len() <= TERMINATION_MESSAGE_LIMIT)
        };
        if let Some(s) = fits(self) {
            return s;
        }
        let mut report = self.clone();
        if report.summary.output.take().is_some() {
            report.summary.output_truncated = Some(true);
            if let Some(s) = fits(&report) {
                return s;
            }
        }
        if let Some(error) = report.error.take() {
            // Keep room for the rest; cut on a char boundary.
            let mut cut: String = error.chars().take(TERMINATION_MESSAGE_LIMIT / 2).collect();
            cut.push('…');
            report.error = Some(cut);
        }
        fits(&report).unwrap_or_else(|| {
            r#"{"error":"the run report did not fit the termination message"}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn run(spec: serde_json::Value) -> FeatureRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
            "metadata": {"name": "r"}, "spec": spec
        }))
        .expect("a FeatureRun")
    }

    #[test]
    fn crds_carry_names_columns_and_categories() {
        let crd = serde_json::to_value(Feature::crd()).expect("crd");
        assert_eq!(
            crd["spec"]["names"]["shortNames"],
            serde_json::json!(["feat"])
        );
        assert_eq!(
            crd["spec"]["names"]["categories"],
            serde_json::json!(["eol"])
        );
        let fr = serde_json::to_value(FeatureRun::crd()).expect("crd");
        let columns: Vec<&str> = fr["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Feature", "Phase", "Status", "Passed", "Failed", "Duration", "Tokens", "Cost",
                "Age"
            ]
        );
        assert!(fr["spec"]["versions"][0]["subresources"]["status"].is_object());
    }

    #[test]
    fn run_reports_fit_the_termination_message() {
        let small = RunReport {
            summary: RunSummary {
                output: Some(serde_json::json!({"slug": "a-b"})),
                ..RunSummary::default()
            },
            ..RunReport::default()
        };
        let text = small.to_termination_message();
        let back: RunReport = serde_json::from_str(&text).expect("json");
        assert_eq!(back, small);

        let big = RunReport {
            summary: RunSummary {
                output: Some(serde_json::json!({"text": "x".repeat(10_000)})),
                tests_passed: Some(3),
                ..RunSummary::default()
            },
            error: Some("e".repeat(10_000)),
            ..RunReport::default()
        };
        let text = big.to_termination_message();
        assert!(
            text.len() <= TERMINATION_MESSAGE_LIMIT,
            "{} bytes",
            text.len()
        );
        let back: RunReport = serde_json::from_str(&text).expect("json");
        assert_eq!(back.summary.output, None);
        assert_eq!(back.summary.output_truncated, Some(true));
        assert_eq!(back.summary.tests_passed, Some(3));
        assert!(back.error.expect("error kept").starts_with("eee"));
    }

    #[test]
    fn cel_rules_hold_offline() {
        let ok = run(serde_json::json!({"featureRef": "f", "tests": true}));
        assert!(ok.validate_cel().is_ok());
        let both = run(serde_json::json!({"featureRef": "f", "tests": true, "operation": "x"}));
        assert!(
            both.validate_cel().is_err(),
            "operation and tests together are refused"
        );
        let neither = run(serde_json::json!({"featureRef": "f"}));
        assert!(
            neither.validate_cel().is_err(),
            "a run needs something to do"
        );
        let bad_retries = run(serde_json::json!({"featureRef": "f", "tests": true, "retries": 50}));
        assert!(bad_retries.validate_cel().is_err());
        let moved = run(serde_json::json!({"featureRef": "g", "tests": true}));
        assert!(
            moved.validate_cel_update(&ok).is_err(),
            "featureRef is immutable"
        );
        assert!(ok.validate_cel_update(&ok).is_ok());

        let source = |v| FeatureSource::validate_cel(&v, None);
        assert!(source(serde_json::json!({"inline": "---"})).is_ok());
        assert!(source(serde_json::json!({})).is_err());
        assert!(
            source(
                serde_json::json!({"inline": "x", "configMapKeyRef": {"name": "c", "key": "k"}})
            )
            .is_err()
        );
    }
}
