//! Who may call a feature: Kubernetes identities and RBAC, no users or roles
//! of our own.
//!
//! A caller presents a bearer token (a ServiceAccount or projected token). The
//! pod asks the API server who it is (TokenReview, for the feature's
//! audiences) and whether that identity may `invoke` `features/operations`
//! on the Feature, or on `<feature>/<operation>` (SubjectAccessReview), so
//! `kubectl create role/rolebinding` decides who may call what. Both answers
//! are kept briefly in bounded caches keyed by the token's SHA-256 (the token
//! itself is never kept), so a warm caller costs a hash and two lookups.
//!
//! While the API server cannot be asked (a restart, an upgrade), a caller
//! whose reviews are younger than the stale window (default 5 minutes) is
//! answered with them, as the API server's own webhook token cache would:
//! serving pods keep serving the callers they know through a control-plane
//! outage, and refuse (503) only those they never saw.

use eol_core::runner_contract::{DEFAULT_AUDIENCE, access, env};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// How long reviews are kept unless configured.
pub const DEFAULT_CACHE_SECONDS: u64 = 10;
/// How many reviews are kept unless configured.
pub const DEFAULT_CACHE_SIZE: u64 = 10_000;
/// How long a review may answer while the API server cannot be asked, unless configured.
pub const DEFAULT_STALE_SECONDS: u64 = 300;
/// How long a review waits to connect to the API server (kube's default is
/// 30 s): a caller is refused with 503 and Retry-After rather than held.
pub const REVIEW_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a review waits for the API server's answer.
pub const REVIEW_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Reviewer`] checks callers against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The Feature's object name (the SubjectAccessReview's resource name).
    pub feature: String,
    /// The Feature's namespace.
    pub namespace: String,
    /// A token must be issued for one of these.
    pub audiences: Vec<String>,
    /// How long a review is kept; zero keeps none.
    pub cache_ttl: Duration,
    /// The most reviews kept, of each kind.
    pub cache_size: u64,
    /// How long a review may still answer while the API server cannot be
    /// asked; zero: not at all.
    pub stale_ttl: Duration,
}

impl AuthSettings {
    /// From `EOL_AUTH*` (see [`env::AUTH`]): `None` unless `EOL_AUTH=kubernetes`.
    /// The feature defaults to `feature_name`, the namespace to the pod's.
    pub fn from_env(feature_name: &str) -> Result<Option<Self>, String> {
        Self::from_vars(feature_name, |name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (for tests).
    pub fn from_vars(
        feature_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match set(env::AUTH).as_deref().map(str::trim) {
            None | Some("anonymous") => return Ok(None),
            Some("kubernetes") => {}
            Some(other) => {
                return Err(format!(
                    "{}={other:?}: expected `kubernetes` or `anonymous`",
                    env::AUTH
                ));
            }
        }
        let namespace = set(env::AUTH_NAMESPACE)
            .or_else(|| {
                // The pod's own, as every pod with a token has it.
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
            })
            .map(|n| n.trim().to_owned())
            .ok_or_else(|| {
                format!(
                    "{}=kubernetes needs the Feature's namespace: set {}",
                    env::AUTH,
                    env::AUTH_NAMESPACE
                )
            })?;
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match set(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v:?}: expected a whole number")),
            }
        };
        let audiences: Vec<String> = set(env::AUTH_AUDIENCES)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Self {
            feature: set(env::AUTH_FEATURE).unwrap_or_else(|| feature_name.to_owned()),
            namespace,
            audiences: if audiences.is_empty() {
                vec![DEFAULT_AUDIENCE.to_owned()]
            } else {
                audiences
            },
            cache_ttl: Duration::from_secs(number(env::AUTH_CACHE_SECONDS, DEFAULT_CACHE_SECONDS)?),
            cache_size: number(env::AUTH_CACHE_SIZE, DEFAULT_CACHE_SIZE)?.max(1),
            stale_ttl: Duration::from_secs(number(env::AUTH_STALE_SECONDS, DEFAULT_STALE_SECONDS)?),
        }))
    }
}

/// The identity a token belongs to, as the API server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user name (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its uid, when it has one.
    pub uid: Option<String>,
    /// Its extra attributes (e.g. the pod a bound token belongs to).
    pub extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl Caller {
    /// Whoever calls a feature that checks no one.
    pub fn anonymous() -> Self {
        Self {
            user: "system:anonymous".to_owned(),
            groups: vec!["system:unauthenticated".to_owned()],
            uid: None,
            extra: None,
        }
    }

    fn from_user(user: UserInfo) -> Self {
        Self {
            user: user.username.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            uid: user.uid,
            extra: user.extra,
        }
    }
}

/// Why a call is refused: 401, 403 or 503, as JSON with a stable kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, a token the API server does not accept (forged, expired, revoked), or one for another audience: 401.
    Unauthenticated(String),
    /// A known caller RBAC does not allow: 403.
    Forbidden(Caller, String),
    /// The API server could not be asked: 503 (nothing is cached).
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthenticated(_) => 401,
            Self::Forbidden(..) => 403,
            Self::Unavailable(_) => 503,
        }
    }

    /// The error's stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(..) => "forbidden",
            Self::Unavailable(_) => "auth_unavailable",
        }
    }

    /// What went wrong, for the caller.
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(_, m) | Self::Unavailable(m) => m,
        }
    }
}

/// A token's review: who it is, or why it is not accepted.
type Identity = Result<Arc<Caller>, String>;

/// Checks callers with the API server, keeping its answers briefly.
pub struct Reviewer {
    client: kube::Client,
    settings: AuthSettings,
    /// By the token's SHA-256.
    identities: moka::future::Cache<[u8; 32], Identity>,
    /// By the token's SHA-256 and the operation: whether RBAC allows it.
    decisions: moka::future::Cache<([u8; 32], String), bool>,
    /// The last accepted identities, kept for `stale_ttl`: what answers
    /// while the API server cannot be asked.
    last_identities: moka::future::Cache<[u8; 32], Arc<Caller>>,
    /// The last access decisions, kept for `stale_ttl`.
    last_decisions: moka::future::Cache<([u8; 32], String), bool>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Reviewer {
    /// A reviewer asking the cluster `client` talks to.
    pub fn new(client: kube::Client, settings: AuthSettings) -> Self {
        Self {
            identities: review_cache(settings.cache_ttl, settings.cache_size),
            decisions: review_cache(settings.cache_ttl, settings.cache_size),
            last_identities: review_cache(settings.stale_ttl, settings.cache_size),
            last_decisions: review_cache(settings.stale_ttl, settings.cache_size),
            client,
            settings,
        }
    }

    /// A reviewer with the pod's own credentials (or the kubeconfig's, outside a cluster).
    pub async fn infer(settings: AuthSettings) -> Result<Self, String> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes API to review callers' tokens with: {e}"))?;
        Ok(Self::new(review_client(config)?, settings))
    }

    /// What it checks against.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Who presents `authorization` (the header's value) and whether they may call `operation`.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        operation: &str,
    ) -> Result<Arc<Caller>, Refusal> {
        let token = bearer(authorization).ok_or_else(|| {
            Refusal::Unauthenticated(
                "no bearer token: send `Authorization: Bearer <a Kubernetes ServiceAccount token>`"
                    .to_owned(),
            )
        })?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let caller = match self
            .identities
            .try_get_with(key, self.review_token(key, token))
            .await
        {
            Ok(identity) => identity.map_err(Refusal::Unauthenticated)?,
            Err(unasked) => self
                .last_identities
                .get(&key)
                .await
                .ok_or_else(|| Refusal::Unavailable((*unasked).clone()))?,
        };
        let decision = (key, operation.to_owned());
        let allowed = match self
            .decisions
            .try_get_with(
                decision.clone(),
                self.review_access(&decision, &caller, operation),
            )
            .await
        {
            Ok(allowed) => allowed,
            Err(unasked) => self
                .last_decisions
                .get(&decision)
                .await
                .ok_or_else(|| Refusal::Unavailable((*unasked).clone()))?,
        };
        if allowed {
            Ok(caller)
        } else {
            let s = &self.settings;
            let message = format!(
                "{} may not call '{operation}': RBAC allows no verb {} on {}.{}/{} named {} or {} in namespace {}",
                caller.user,
                access::VERB,
                access::RESOURCE,
                access::GROUP,
                access::SUBRESOURCE,
                s.feature,
                access::operation_name(&s.feature, operation),
                s.namespace,
            );
            Err(Refusal::Forbidden((*caller).clone(), message))
        }
    }

    /// TokenReview: `Ok(Ok(caller))`, `Ok(Err(why not))` (kept like an identity), or `Err` (not asked).
    /// An accepted identity is also kept as the last one known for `key`.
    async fn review_token(&self, key: [u8; 32], token: &str) -> Result<Identity, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(self.settings.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("the TokenReview failed: {e}"))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the API server does not accept the token".to_owned());
            return Ok(Err(format!(
                "invalid token for audiences {:?}: {why}",
                self.settings.audiences
            )));
        }
        // The API server answers with the audiences the token is valid for; a
        // reviewer must check it holds one of its own.
        let granted = status.audiences.unwrap_or_default();
        if !granted.iter().any(|a| self.settings.audiences.contains(a)) {
            return Ok(Err(format!(
                "the token is not for audiences {:?} (it is for {granted:?})",
                self.settings.audiences
            )));
        }
        match status.user {
            Some(user) => {
                let caller = Arc::new(Caller::from_user(user));
                self.last_identities.insert(key, caller.clone()).await;
                Ok(Ok(caller))
            }
            None => Ok(Err("the API server named no user for the token".to_owned())),
        }
    }

    /// SubjectAccessReview on the Feature, then on `<feature>/<operation>`;
    /// the answer is also kept as the last one known for `decision`.
    async fn review_access(
        &self,
        decision: &([u8; 32], String),
        caller: &Caller,
        operation: &str,
    ) -> Result<bool, String> {
        let s = &self.settings;
        for name in [
            s.feature.clone(),
            access::operation_name(&s.feature, operation),
        ] {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(caller.user.clone()),
                    groups: Some(caller.groups.clone()),
                    uid: caller.uid.clone(),
                    extra: caller.extra.clone(),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(access::GROUP.to_owned()),
                        resource: Some(access::RESOURCE.to_owned()),
                        subresource: Some(access::SUBRESOURCE.to_owned()),
                        verb: Some(access::VERB.to_owned()),
                        name: Some(name),
                        namespace: Some(s.namespace.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("the SubjectAccessReview failed: {e}"))?;
            if reviewed.status.is_some_and(|s| s.allowed) {
                self.last_decisions.insert(decision.clone(), true).await;
                return Ok(true);
            }
        }
        self.last_decisions.insert(decision.clone(), false).await;
        Ok(false)
    }
}

/// A cache of reviews kept `ttl` (none when zero), at most `size` of them.
/// A client on `config` whose reviews give up after [`REVIEW_CONNECT_TIMEOUT`]
/// to connect and [`REVIEW_READ_TIMEOUT`] to answer. Seen on the cluster: for
/// seconds after an API server restart the `kubernetes` Service did not
/// route, and reviews waited out kube's 30 s while callers timed out.
fn review_client(mut config: kube::Config) -> Result<kube::Client, String> {
    config.connect_timeout = Some(REVIEW_CONNECT_TIMEOUT);
    config.read_timeout = Some(REVIEW_READ_TIMEOUT);
    kube::Client::try_from(config)
        .map_err(|e| format!("no Kubernetes API to review callers' tokens with: {e}"))
}

fn review_cache<K, V>(ttl: Duration, size: u64) -> moka::future::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::future::Cache::builder()
        .max_capacity(if ttl.is_zero() { 0 } else { size })
        .time_to_live(ttl.max(Duration::from_millis(1)))
        .build()
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<AuthSettings>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AuthSettings::from_vars("orders", |name| vars.get(name).cloned())
    }

    #[test]
    fn auth_is_off_unless_asked_for() {
        assert_eq!(settings(&[]), Ok(None));
        assert_eq!(settings(&[(env::AUTH, "anonymous")]), Ok(None));
        let err = settings(&[(env::AUTH, "basic")]).unwrap_err();
        assert!(err.contains("EOL_AUTH") && err.contains("basic"), "{err}");
    }

    #[test]
    fn kubernetes_auth_reads_its_settings_with_defaults() {
        let s = settings(&[(env::AUTH, "kubernetes"), (env::AUTH_NAMESPACE, "shop")])
            .unwrap()
            .unwrap();
        assert_eq!(s.feature, "orders");
        assert_eq!(s.namespace, "shop");
        assert_eq!(s.audiences, vec![DEFAULT_AUDIENCE.to_owned()]);
        assert_eq!(s.cache_ttl, Duration::from_secs(DEFAULT_CACHE_SECONDS));
        assert_eq!(s.cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(s.stale_ttl, Duration::from_secs(DEFAULT_STALE_SECONDS));
        let s = settings(&[
            (env::AUTH, "kubernetes"),
            (env::AUTH_NAMESPACE, "shop"),
            (env::AUTH_FEATURE, "orders-v2"),
            (env::AUTH_AUDIENCES, "a, b,"),
            (env::AUTH_CACHE_SECONDS, "0"),
            (env::AUTH_CACHE_SIZE, "5"),
            (env::AUTH_STALE_SECONDS, "0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.feature, "orders-v2");
        assert_eq!(s.audiences, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(s.cache_ttl, Duration::ZERO);
        assert_eq!(s.cache_size, 5);
        assert_eq!(s.stale_ttl, Duration::ZERO);
        let err = settings(&[
            (env::AUTH, "kubernetes"),
            (env::AUTH_NAMESPACE, "shop"),
            (env::AUTH_CACHE_SIZE, "many"),
        ])
        .unwrap_err();
        assert!(err.contains("EOL_AUTH_CACHE_SIZE"), "{err}");
    }

    /// The settings of the outage tests: feature `orders` in `shop`.
    fn test_settings(stale_seconds: u64) -> AuthSettings {
        AuthSettings {
            feature: "orders".to_owned(),
            namespace: "shop".to_owned(),
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
            cache_ttl: Duration::from_secs(10),
            cache_size: 100,
            stale_ttl: Duration::from_secs(stale_seconds),
        }
    }

    /// A reviewer whose API server is not there (nothing listens on port 9).
    fn cut_off(stale_seconds: u64) -> Reviewer {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        Reviewer::new(
            kube::Client::try_from(config).expect("a client"),
            test_settings(stale_seconds),
        )
    }

    #[tokio::test]
    async fn an_api_server_that_accepts_but_never_answers_refuses_the_caller_within_seconds() {
        // Connections are accepted and held, never answered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().expect("a URL"));
        let reviewer = Reviewer::new(review_client(config).expect("a client"), test_settings(300));
        let started = std::time::Instant::now();
        let refused = reviewer
            .authorize(Some("Bearer some-token"), "list")
            .await
            .expect_err("no answer");
        let took = started.elapsed();
        assert_eq!(refused.kind(), "auth_unavailable");
        assert_eq!(refused.status(), 503);
        assert!(
            took >= REVIEW_READ_TIMEOUT && took < REVIEW_READ_TIMEOUT + Duration::from_secs(3),
            "gave up after {took:?}"
        );
        held.abort();
    }

    #[tokio::test]
    async fn callers_reviewed_before_an_api_server_outage_are_answered_through_it() {
        let key: [u8; 32] = Sha256::digest(b"known-token").into();
        let known = Arc::new(Caller {
            user: "system:serviceaccount:shop:web".to_owned(),
            groups: vec![],
            uid: None,
            extra: None,
        });
        for stale_seconds in [300, 0] {
            let reviewer = cut_off(stale_seconds);
            // What earlier reviews left: allowed to call `list`, not `drop`.
            reviewer.last_identities.insert(key, known.clone()).await;
            for (op, allowed) in [("list", true), ("drop", false)] {
                reviewer
                    .last_decisions
                    .insert((key, op.to_owned()), allowed)
                    .await;
            }
            let list = reviewer.authorize(Some("Bearer known-token"), "list").await;
            let drop = reviewer.authorize(Some("Bearer known-token"), "drop").await;
            let stranger = reviewer.authorize(Some("Bearer other-token"), "list").await;
            if stale_seconds > 0 {
                assert_eq!(
                    list.expect("answered from the last review").user,
                    known.user
                );
                assert_eq!(drop.map_err(|r| r.kind()), Err("forbidden"));
            } else {
                // No stale window: nothing was kept, the outage refuses.
                assert_eq!(list.map_err(|r| r.kind()), Err("auth_unavailable"));
            }
            // A token never reviewed is refused while the API server is away.
            let refused = stranger.expect_err("an unknown token");
            assert_eq!(refused.kind(), "auth_unavailable");
            assert!(
                refused.message().contains("TokenReview failed"),
                "{}",
                refused.message()
            );
        }
    }

    #[test]
    fn only_bearer_tokens_are_taken() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn refusals_have_stable_kinds_and_statuses() {
        let cases = [
            (
                Refusal::Unauthenticated(String::new()),
                401,
                "unauthenticated",
            ),
            (
                Refusal::Forbidden(Caller::anonymous(), String::new()),
                403,
                "forbidden",
            ),
            (Refusal::Unavailable(String::new()), 503, "auth_unavailable"),
        ];
        for (refusal, status, kind) in cases {
            assert_eq!((refusal.status(), refusal.kind()), (status, kind));
        }
    }
}
