//! A mocked API server for reconcile tests (the `ApiServerVerifier` pattern of
//! kube-rs/controller-rs): each scenario lists the requests a reconcile must
//! make, in order, and answers them. Anything else fails the test.

use crate::config::OperatorConfig;
use crate::context::{Caches, Context};
use crate::metrics::Metrics;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use prometheus_client::registry::Registry;
use std::sync::Arc;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers the reconcile's requests and checks them.
pub struct ApiServerVerifier(Handle);

/// One expected request: method, path (prefix before `?`), and the answer.
pub struct Expect {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: &'static str,
    /// The URL path.
    pub path: String,
    /// Checks the request body.
    pub check: Box<dyn FnOnce(serde_json::Value) + Send>,
    /// Status code and JSON body of the answer.
    pub reply: (u16, serde_json::Value),
}

impl Expect {
    /// A request answered with `reply`, body unchecked.
    pub fn new(
        method: &'static str,
        path: impl Into<String>,
        reply: (u16, serde_json::Value),
    ) -> Self {
        Self {
            method,
            path: path.into(),
            check: Box::new(|_| {}),
            reply,
        }
    }

    /// Also checks the request's JSON body.
    pub fn checking(mut self, check: impl FnOnce(serde_json::Value) + Send + 'static) -> Self {
        self.check = Box::new(check);
        self
    }
}

/// A 404 body as the API server sends it.
pub fn not_found(what: &str) -> (u16, serde_json::Value) {
    (
        404,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

impl ApiServerVerifier {
    /// Serves `expected` in order, then checks that no further request comes.
    pub fn run(self, expected: Vec<Expect>) -> tokio::task::JoinHandle<()> {
        let mut handle = self.0;
        tokio::spawn(async move {
            for e in expected {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(
                    request.method().as_str(),
                    e.method,
                    "method of {}",
                    request.uri()
                );
                assert_eq!(request.uri().path(), e.path, "path");
                let body = request.into_body().collect_bytes().await.expect("body");
                let json = if body.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&body).expect("a JSON body")
                };
                (e.check)(json);
                let (code, reply) = e.reply;
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                        .expect("response"),
                );
            }
            // Nothing else may be requested.
            let extra =
                tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request())
                    .await;
            if let Ok(Some((request, _))) = extra {
                panic!("unexpected request: {} {}", request.method(), request.uri());
            }
        })
    }
}

/// A context whose client talks to the returned verifier.
pub fn context(config: OperatorConfig) -> (Arc<Context>, ApiServerVerifier) {
    context_with(config, Caches::empty())
}

/// [`context`] with the given watch caches.
pub fn context_with(config: OperatorConfig, caches: Caches) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Metrics::register(&mut Registry::default());
    (
        Arc::new(Context::new(client, config, metrics, caches)),
        ApiServerVerifier(handle),
    )
}

/// The `type`'s condition in a status patch.
pub fn condition(patch: &serde_json::Value, type_: &str) -> serde_json::Value {
    patch["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(serde_json::Value::Null)
}
