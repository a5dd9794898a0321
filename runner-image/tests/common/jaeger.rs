//! A Jaeger v2 of the test's own (in-memory storage, OTLP/HTTP in, query API
//! out) on free ports, killed on drop; and reading traces back from it.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `kind-tests/cluster.sh build` leaves the Jaeger binary.
const CACHED: &str = ".cache/eol/jaeger/v1.75.0/bin/jaeger";

/// The binary: `EOL_JAEGER_BIN`, else the build cache. A missing binary
/// fails the test, saying how to get it.
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("EOL_JAEGER_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(CACHED),
    };
    assert!(
        path.is_file(),
        "these tests need Jaeger v2 at {} (set EOL_JAEGER_BIN, or build it with kind-tests/cluster.sh build)",
        path.display()
    );
    path
}

/// A running Jaeger.
pub struct Jaeger {
    child: Child,
    /// The OTLP/HTTP base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_url: String,
    /// The OTLP/HTTP port (for a URL by another of the host's addresses).
    pub otlp_port: u16,
    /// The query API's base URL.
    pub query_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (the OS's pick).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn config(otlp_host: &str, otlp: u16, query_http: u16, query_grpc: u16) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # No metrics endpoint of its own (the default :8888 would collide).
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
    http:
      endpoint: 127.0.0.1:{query_http}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {otlp_host}:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    )
}

impl Jaeger {
    /// Starts Jaeger and waits until both its OTLP receiver and query API answer.
    /// A port taken between picking and binding (other tests run in parallel)
    /// makes Jaeger exit; it is then started again on other ports.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// [`Self::start`] with its OTLP receiver on `otlp_host` (`0.0.0.0`: also
    /// for pods of the local cluster, by the node's address); the query API
    /// stays on 127.0.0.1.
    pub fn start_on(otlp_host: &str) -> Self {
        let binary = binary();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let (otlp, http, grpc) = (free_port(), free_port(), free_port());
            let config_file = dir.path().join("jaeger.yaml");
            std::fs::write(&config_file, config(otlp_host, otlp, http, grpc))
                .expect("the Jaeger config");
            let log = dir.path().join("jaeger.log");
            let child = Command::new(&binary)
                .arg("--config")
                .arg(&config_file)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("the Jaeger log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary.display()));
            let mut jaeger = Jaeger {
                child,
                otlp_url: format!("http://127.0.0.1:{otlp}"),
                otlp_port: otlp,
                query_url: format!("http://127.0.0.1:{http}"),
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = jaeger.child.try_wait() {
                    break;
                }
                let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
                if up(otlp) && up(http) {
                    return jaeger;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("Jaeger did not come up on free ports in three tries; its last log:\n{last_log}");
    }

    /// The trace `trace_id` once it holds a span for which `complete` says
    /// the trace is all there (spans arrive in batches), within 15 s.
    pub async fn trace(&self, trace_id: &str, complete: impl Fn(&Trace) -> bool) -> Trace {
        let url = format!("{}/api/traces/{trace_id}", self.query_url);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(&url).await
                && let Ok(body) = response.json::<Value>().await
            {
                if let Some(trace) = body["data"].get(0).map(|t| Trace(t.clone()))
                    && complete(&trace)
                {
                    return trace;
                }
                last = body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("Jaeger has no complete trace {trace_id} after 15 s; it answered: {last:#}");
    }

    /// The service names Jaeger has seen spans of.
    pub async fn services(&self) -> Vec<String> {
        let body: Value = reqwest::get(format!("{}/api/services", self.query_url))
            .await
            .expect("the Jaeger query API answers")
            .json()
            .await
            .expect("JSON from the Jaeger query API");
        body["data"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One trace as the Jaeger query API gives it.
#[derive(Debug, Clone)]
pub struct Trace(pub Value);

/// One span of a [`Trace`].
#[derive(Debug, Clone)]
pub struct Span(pub Value);

impl Trace {
    /// Its spans.
    pub fn spans(&self) -> Vec<Span> {
        self.0["spans"]
            .as_array()
            .map(|s| s.iter().cloned().map(Span).collect())
            .unwrap_or_default()
    }

    /// The spans named `name`.
    pub fn named(&self, name: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.name() == name)
            .collect()
    }

    /// The one span named `name`; fails the test otherwise.
    pub fn one(&self, name: &str) -> Span {
        let mut found = self.named(name);
        assert_eq!(
            found.len(),
            1,
            "expected one span '{name}' in the trace; its spans: {:?}",
            self.spans().iter().map(Span::name).collect::<Vec<_>>()
        );
        found.remove(0)
    }

    /// The service name of `span`'s process.
    pub fn service(&self, span: &Span) -> String {
        let process = span.0["processID"].as_str().unwrap_or_default();
        self.0["processes"][process]["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Span {
    /// The operation name.
    pub fn name(&self) -> String {
        self.0["operationName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The span id (16 hex digits).
    pub fn id(&self) -> String {
        self.0["spanID"].as_str().unwrap_or_default().to_owned()
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> String {
        self.0["traceID"].as_str().unwrap_or_default().to_owned()
    }

    /// The parent's span id, if it has one.
    pub fn parent(&self) -> Option<String> {
        self.0["references"].as_array()?.iter().find_map(|r| {
            (r["refType"] == "CHILD_OF")
                .then(|| r["spanID"].as_str().unwrap_or_default().to_owned())
        })
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<Value> {
        self.0["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["value"].clone())
    }

    /// Tag `key` when it is an integer attribute (the query API writes
    /// int64 values as JSON strings); `None` when absent or of another type.
    pub fn int(&self, key: &str) -> Option<i64> {
        let tag = self.0["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)?;
        if tag["type"] != "int64" {
            return None;
        }
        match &tag["value"] {
            Value::String(s) => s.parse().ok(),
            other => other.as_i64(),
        }
    }

    /// Tag `key` as text (numbers and booleans in their JSON form); "" when absent.
    pub fn text(&self, key: &str) -> String {
        match self.tag(key) {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }
}
