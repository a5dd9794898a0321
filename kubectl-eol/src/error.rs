//! What can go wrong, said so a user knows what to do next: which object,
//! which namespace, and whether it is missing, forbidden or the cluster is
//! unreachable.

use std::process::ExitCode;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read, or names no usable cluster.
    #[error("failed to load the kubeconfig: {0}")]
    Config(String),
    /// The user's identity may not do what the command needs (HTTP 403).
    #[error(
        "no access: you may not {verb} {resource} in namespace {namespace}: {message} \
         (ask for a Role granting '{verb}' on {resource}, or check `kubectl auth can-i {verb} {resource} -n {namespace}`)"
    )]
    Forbidden {
        /// The API verb, e.g. `get`, `patch`.
        verb: &'static str,
        /// The resource, e.g. `features.eol.dev`.
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's own message.
        message: String,
    },
    /// The credentials were refused (HTTP 401).
    #[error(
        "the API server refused your credentials ({message}): log in again or check the kubeconfig's user"
    )]
    Unauthorized {
        /// The API server's message.
        message: String,
    },
    /// The object does not exist.
    #[error("{kind} {name} not found in namespace {namespace}")]
    NotFound {
        /// The kind, e.g. `Feature`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The API server did not answer: refused, unresolvable, a TLS failure.
    #[error(
        "cannot reach the API server {server} (context {context}) to {action}: {cause} \
         (check it with `kubectl cluster-info`, or pick another context with --context)"
    )]
    Unreachable {
        /// The server's URL.
        server: String,
        /// The kubeconfig context.
        context: String,
        /// What the command was doing, e.g. `get Feature inventory in namespace default`.
        action: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        cause: String,
    },
    /// Any other API failure (conflict, invalid object).
    #[error("failed to {action}: {source}")]
    Api {
        /// What the command was doing, e.g. `get Feature inventory in namespace default`.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The request itself cannot be carried out (bad input, a refused switch).
    #[error("{0}")]
    Refused(String),
    /// The command ran, and what it ran failed (a FeatureRun that did not succeed).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code: 1 when what was run failed, 2 when the command could not run.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Failed(_) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}

/// One API request, for error messages: the verb, the resource, the object and namespace.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The API verb, e.g. `get`.
    pub verb: &'static str,
    /// The resource as `kubectl auth can-i` spells it, e.g. `features.eol.dev`.
    pub resource: &'static str,
    /// The kind, for "not found", e.g. `Feature`.
    pub kind: &'static str,
    /// The object, when the request names one.
    pub name: Option<&'a str>,
    /// The namespace.
    pub namespace: &'a str,
    /// The API server's URL.
    pub server: &'a str,
    /// The kubeconfig context.
    pub context: &'a str,
}

impl Request<'_> {
    /// Turns the client's error into one that names this request.
    pub fn failed(&self, error: kube::Error) -> Error {
        match &error {
            kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
                verb: self.verb,
                resource: self.resource,
                namespace: self.namespace.to_owned(),
                message: status.message.clone(),
            },
            kube::Error::Api(status) if status.code == 401 => Error::Unauthorized {
                message: status.message.clone(),
            },
            kube::Error::Api(status) if status.code == 404 && self.name.is_some() => {
                Error::NotFound {
                    kind: self.kind,
                    name: self.name.unwrap_or_default().to_owned(),
                    namespace: self.namespace.to_owned(),
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
                server: self.server.to_owned(),
                context: self.context.to_owned(),
                action: self.action(),
                cause: innermost(&error),
            },
            _ => Error::Api {
                action: self.action(),
                source: error,
            },
        }
    }

    /// What the request does, e.g. `get Feature inventory in namespace default`.
    fn action(&self) -> String {
        match self.name {
            Some(name) => format!(
                "{} {} {name} in namespace {}",
                self.verb, self.kind, self.namespace
            ),
            None => format!(
                "{} {} in namespace {}",
                self.verb, self.resource, self.namespace
            ),
        }
    }
}

/// The last error in `error`'s chain of sources: the transport's own words
/// (`Connection refused`), where the outer ones say only `client error (Connect)`.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}
