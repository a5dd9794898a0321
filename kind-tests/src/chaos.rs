//! What the load and chaos tests (`tests/chaos.rs`, `tests/load.rs`) inject
//! and measure: restarts of the local cluster's components, an outage of the
//! model endpoint (a TCP relay the test closes and opens again), and request
//! loops that record every failure with its time.
//!
//! Traffic goes only to loopback and to the cluster's own addresses, and
//! every loop is bounded in count and in time.

use crate::TestEnv;
use crate::cli::repo_root;
use k8s_openapi::api::core::v1::Service;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The long form of the load and chaos suite (`EOL_CHAOS_LONG=1`): longer
/// loads, more clients, every fault twice. The short form runs in `.ci/run`.
pub fn long_form() -> bool {
    std::env::var("EOL_CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// Stops the local cluster's `component` (SIGTERM; SIGKILL at once with
/// `kill`) and starts it again with its flags (`kind-tests/cluster.sh
/// restart`); returns once it serves again, with how long that took.
pub async fn restart_component(component: &str, kill: bool) -> Duration {
    let started = Instant::now();
    let script = repo_root().join("kind-tests/cluster.sh");
    let mut cmd = tokio::process::Command::new(&script);
    cmd.arg("restart").arg(component);
    if kill {
        cmd.arg("--kill");
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`cluster.sh restart {component}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// The ClusterIP of Service `name` (the node routes to it).
pub async fn cluster_ip(env: &TestEnv, name: &str) -> String {
    env.api::<Service>()
        .get(name)
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ip)
        .unwrap_or_else(|| panic!("Service {name} has no ClusterIP"))
}

/// The node's InternalIP: where pods reach a process of this host (the
/// local model, a [`Relay`]).
pub async fn node_ip(client: &kube::Client) -> String {
    let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    let list = nodes
        .list(&kube::api::ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list the nodes: {e}"));
    list.items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .expect("a node with an InternalIP")
}

/// Waits until the cluster serves Services made now, by name and by
/// address: after an API server restart, CoreDNS and kube-proxy learn of new
/// objects only once their watches come back (client-go backs off up to
/// 30 s), and the tests after a chaos case need both. One Service (selecting
/// `target_selector`, on `port`) is made in the test's namespace and must
/// resolve and route; another in a namespace made now must resolve (CoreDNS
/// answers nothing for a namespace it has not seen). Returns how long that took.
pub async fn settled(env: &TestEnv, target_selector: serde_json::Value, port: u16) -> Duration {
    let started = Instant::now();
    let suffix = rand::random::<u32>() % 100_000;
    let name = format!("settle-{suffix}");
    let fresh_namespace = format!("eol-it-settle-{suffix}");
    let service = |selector: serde_json::Value| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"port": port, "targetPort": port}]}
        }))
        .expect("a Service")
    };
    let here = env.api::<Service>();
    let fresh = kube::Api::<Service>::namespaced(env.client.clone(), &fresh_namespace);
    // The API server may still be coming back.
    let create = async |api: &kube::Api<Service>, svc: &Service| {
        while api
            .create(&kube::api::PostParams::default(), svc)
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "cannot create Service {name}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    crate::create_namespace(
        &env.client,
        &fresh_namespace,
        serde_json::json!({"eol.dev/test": "settle"}),
    )
    .await;
    create(&here, &service(target_selector)).await;
    create(&fresh, &service(serde_json::json!({"app": "none"}))).await;
    let ip = cluster_ip(env, &name).await;
    let fresh_ip = fresh
        .get(&name)
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ip)
        .expect("the fresh namespace's Service has a ClusterIP");
    let dns = kube::Api::<Service>::namespaced(env.client.clone(), "kube-system")
        .get("kube-dns")
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ip)
        .expect("the kube-dns Service");
    let resolves = async |fqdn: &str, ip: &str| {
        tokio::process::Command::new("busybox")
            .args(["nslookup", fqdn, &dns])
            .output()
            .await
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(ip))
    };
    let fqdn = format!("{name}.{}.svc.cluster.local", env.namespace);
    let fresh_fqdn = format!("{name}.{fresh_namespace}.svc.cluster.local");
    loop {
        let resolved = resolves(&fqdn, &ip).await && resolves(&fresh_fqdn, &fresh_ip).await;
        let routed = resolved
            && tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect((ip.as_str(), port)),
            )
            .await
            .is_ok_and(|c| c.is_ok());
        if routed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "Services {fqdn} ({ip}) and {fresh_fqdn} not served 240 s after they were made: DNS answered {resolved}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = here.delete(&name, &Default::default()).await;
    crate::delete_namespace(&env.client, &fresh_namespace).await;
    started.elapsed()
}

/// Waits until `http://{ip}/healthz` answers 200: kube-proxy routes a new
/// Service's address only once it has programmed it.
pub async fn routed(ip: &str) {
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        let answered = http
            .get(format!("http://{ip}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if answered {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "http://{ip}/healthz did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One call's outcome in a [`Traffic`] loop.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the call was sent, from the loop's start.
    pub at: Duration,
    /// How long it took to answer (or fail).
    pub latency: Duration,
    /// The HTTP status (`None`: no answer at all).
    pub status: Option<u16>,
    /// The error `kind` of a failed call's JSON body (`kind: message`), or the transport error.
    pub error: Option<String>,
}

impl Outcome {
    /// Answered with a 2xx status.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A request to send in a loop: `POST {url}` with `body`, as `token` (if any).
#[derive(Clone)]
pub struct Request {
    /// The full URL, e.g. `http://10.0.0.12/v1/operations/stock_level`.
    pub url: String,
    /// The bearer token, if the Feature wants one.
    pub token: Option<String>,
    /// Builds the JSON body of the `n`th call of a client (distinct inputs
    /// keep caches out of a measurement when they matter).
    pub body: Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>,
    /// How long one call may take before it counts as failed (30 s waits
    /// out a restart of the namespace's Redis; a busy local model needs more).
    pub timeout: Duration,
}

/// `clients` concurrent request loops, each sending one call after another
/// (with `pause` between calls) until stopped, or `max_calls` per client,
/// or `max_time`: whichever comes first.
pub struct Traffic {
    /// When the loops started: each [`Outcome::at`] counts from here.
    pub began: Instant,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Vec<Outcome>>,
}

impl Traffic {
    /// Starts the loops.
    pub fn start(
        request: Request,
        clients: usize,
        pause: Duration,
        max_calls: usize,
        max_time: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(request.timeout)
            .build()
            .expect("an HTTP client");
        let began = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let (stop, http, request) = (stop.clone(), http.clone(), request.clone());
            tasks.spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..max_calls {
                    if stop.load(Ordering::Relaxed) || began.elapsed() > max_time {
                        break;
                    }
                    let at = began.elapsed();
                    let sent = Instant::now();
                    let mut call = http.post(&request.url).json(&(request.body)(n));
                    if let Some(token) = &request.token {
                        call = call.bearer_auth(token);
                    }
                    let (status, error) = match call.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let body: serde_json::Value = resp.json().await.unwrap_or_default();
                            let kind = body["error"]["kind"].as_str().map(|kind| {
                                let message = body["error"]["message"].as_str().unwrap_or_default();
                                if (200..300).contains(&status) || message.is_empty() {
                                    kind.to_owned()
                                } else {
                                    format!("{kind}: {message}")
                                }
                            });
                            (Some(status), kind)
                        }
                        Err(e) => {
                            let cause = std::error::Error::source(&e)
                                .map(|c| format!(" ({c})"))
                                .unwrap_or_default();
                            let kind = if e.is_timeout() {
                                "timeout after"
                            } else {
                                "transport"
                            };
                            (None, Some(format!("{kind}: {e}{cause}")))
                        }
                    };
                    outcomes.push(Outcome {
                        at,
                        latency: sent.elapsed(),
                        status,
                        error,
                    });
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                outcomes
            });
        }
        Self { began, stop, tasks }
    }

    /// Stops the loops and returns every outcome, in the order sent.
    pub async fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits for the loops to end by themselves (count or time).
    pub async fn finish(&mut self) -> Vec<Outcome> {
        let mut all = Vec::new();
        while let Some(outcomes) = self.tasks.join_next().await {
            all.extend(outcomes.expect("a traffic loop panicked"));
        }
        all.sort_by_key(|o| o.at);
        all
    }
}

/// Latency percentiles and failures of a set of outcomes.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Calls sent.
    pub calls: usize,
    /// Calls not answered with a 2xx.
    pub failed: usize,
    /// Median latency of the answered calls.
    pub p50: Duration,
    /// 99th percentile latency of the answered calls.
    pub p99: Duration,
    /// Answered calls per second over `seconds`.
    pub per_second: f64,
}

/// Summarizes `outcomes` sent over `seconds`.
pub fn summarize(outcomes: &[Outcome], seconds: f64) -> Summary {
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.ok())
        .map(|o| o.latency)
        .collect();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Summary {
        calls: outcomes.len(),
        failed: outcomes.iter().filter(|o| !o.ok()).count(),
        p50: at(0.50),
        p99: at(0.99),
        per_second: latencies.len() as f64 / seconds.max(f64::EPSILON),
    }
}

/// A TCP relay in front of an endpoint (the model's), on every address of
/// this host, that a test takes down (connections refused, the open ones
/// cut) and brings back on the same port: an outage of the endpoint as its
/// clients see it, with the real endpoint behind.
pub struct Relay {
    /// The port the relay listens on.
    pub port: u16,
    target: String,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Relays connections on a free port to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("0.0.0.0:0")
            .await
            .expect("a port for the relay");
        let port = listener.local_addr().expect("its address").port();
        let mut relay = Self {
            port,
            target: target.to_owned(),
            accepting: None,
        };
        relay.accepting = Some(tokio::spawn(Self::accept(listener, relay.target.clone())));
        relay
    }

    async fn accept(listener: TcpListener, target: String) {
        // The relayed connections live in this set: aborting the accept loop
        // drops it, which cuts them all.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    let target = target.clone();
                    connections.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
                Some(_) = connections.join_next() => {}
            }
        }
    }

    /// The endpoint goes away: new connections are refused, open ones cut.
    pub async fn down(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The endpoint comes back on the same port.
    pub async fn up(&mut self) {
        if self.accepting.is_some() {
            return;
        }
        let listener = TcpListener::bind(("0.0.0.0", self.port))
            .await
            .unwrap_or_else(|e| panic!("the relay's port {} again: {e}", self.port));
        self.accepting = Some(tokio::spawn(Self::accept(listener, self.target.clone())));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
        }
    }
}

/// An endpoint that accepts connections and never answers (a hung model
/// server): its clients wait until their own timeouts.
pub struct BlackHole {
    /// The port it listens on, on every address of this host.
    pub port: u16,
    accepting: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    /// Listens on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("0.0.0.0:0")
            .await
            .expect("a port for the black hole");
        let port = listener.local_addr().expect("its address").port();
        let accepting = tokio::spawn(async move {
            // Held open, never read or answered; bounded so a broken test
            // cannot gather sockets without end.
            let mut held = Vec::new();
            while held.len() < 1000 {
                if let Ok((stream, _)) = listener.accept().await {
                    held.push(stream);
                }
            }
        });
        Self { port, accepting }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
