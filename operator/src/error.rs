//! The operator's errors, each with a stable kind for metrics and events.

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed (transient: retried with backoff).
    #[error("failed to {action} for {object}: {source}")]
    Kube {
        /// What the operator was doing, e.g. "apply the Deployment".
        action: &'static str,
        /// The object, as `namespace/name`.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks something every stored object has (name, namespace, uid).
    #[error("the object {0} has no {1}")]
    MissingMetadata(String, &'static str),
    /// Serialising a child object failed.
    #[error("failed to serialise {what}: {source}")]
    Serialize {
        /// Which object.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The namespace's Redis could not be reached or read (a FeatureRun in mode Queue; retried).
    #[error("{object}: {message}")]
    Redis {
        /// The object, as `namespace/name`.
        object: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// A stable label: the `kind` of `eol_operator_reconcile_errors_total` and the event reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 422 => "Invalid",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ApiUnreachable",
            },
            Error::MissingMetadata(..) => "MissingMetadata",
            Error::Serialize { .. } => "Serialize",
            Error::Redis { .. } => "RedisUnavailable",
        }
    }

    /// Wraps an API error with what was being done, and to which object.
    pub fn kube(
        action: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Self {
        let object = object.into();
        move |source| Error::Kube {
            action,
            object,
            source,
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
