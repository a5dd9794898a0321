//! What Kubernetes auth adds to a call, side by side in one run: two
//! `eol serve` of the example inventory feature (implementation phase), one
//! anonymous and one checking callers against the cluster (TokenReview and
//! SubjectAccessReview, `EOL_AUTH=kubernetes`), called in turn with the same
//! ServiceAccount token. After the first call the token's reviews are cached
//! (kept 10 s; the run is shorter), so every later call is the cached path;
//! the first call's cost (two reviews) is shown apart. Target: <= 0.2 ms added at p50.
//!
//! Needs the local cluster (`kind-tests/cluster.sh up`) and Redis (`scripts/redis.sh install`).
//! Run with `cargo bench -p eol-kind-tests --bench auth`.
#![allow(clippy::unwrap_used)]

use eol_kind_tests::fixtures::{service_account_with_access, token};
use eol_kind_tests::{client, kubeconfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Calls per side (after the warm-up).
const CALLS: usize = 3000;
const WARM_UP: usize = 100;

/// A running `eol serve`, stopped on drop.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    /// SIGTERM, so `eol serve` stops the local Redis it started.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn serve(eol: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../features/examples");
    let child = std::process::Command::new(eol)
        .args(["serve", "inventory.eol", "--no-test-gate", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(examples)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "eol-runner",
            "--bin",
            "eol",
        ])
        .status()
        .unwrap();
    assert!(
        built.success(),
        "cargo build --release -p eol-runner failed"
    );
    let eol = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("eol");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = client().await;
        let ns = format!("eol-bench-auth-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        service_account_with_access(&client, &ns, "caller", Some(&["inventory"])).await;
        let bearer = token(
            &client,
            &ns,
            "caller",
            eol_core::runner_contract::DEFAULT_AUDIENCE,
        )
        .await;

        let config = kubeconfig();
        let off = serve(&eol, &[]);
        let on = serve(
            &eol,
            &[
                ("EOL_AUTH", "kubernetes"),
                ("EOL_AUTH_NAMESPACE", &ns),
                ("EOL_AUTH_FEATURE", "inventory"),
                ("KUBECONFIG", &config),
            ],
        );
        let http = reqwest::Client::new();
        for server in [&off, &on] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while http
                .get(format!("{}/readyz", server.url))
                .send()
                .await
                .map(|r| r.status() != 200)
                .unwrap_or(true)
            {
                assert!(Instant::now() < deadline, "eol serve did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let call = |server: &Server| {
            let request = http
                .post(format!("{}/v1/operations/stock_level", server.url))
                .bearer_auth(&bearer)
                .json(&serde_json::json!({"sku": "BENCH-1"}));
            async move {
                let t = Instant::now();
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                r.bytes().await.unwrap();
                t.elapsed()
            }
        };
        let first = call(&on).await;
        let (mut times_off, mut times_on) = (Vec::new(), Vec::new());
        for i in 0..CALLS + WARM_UP {
            // Alternate which goes first, so neither always follows the other.
            let (a, b) = if i % 2 == 0 { (&off, &on) } else { (&on, &off) };
            let (ta, tb) = (call(a).await, call(b).await);
            if i >= WARM_UP {
                let (t_off, t_on) = if i % 2 == 0 { (ta, tb) } else { (tb, ta) };
                times_off.push(t_off);
                times_on.push(t_on);
            }
        }
        times_off.sort();
        times_on.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("{CALLS} calls per side, interleaved; the same ServiceAccount token both ways");
        println!(
            "first call with auth (two reviews, uncached): {:.0} us",
            us(first)
        );
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            let (a, b) = (quantile(&times_off, q), quantile(&times_on, q));
            println!(
                "{name}: off {:>8.1} us   on {:>8.1} us   added {:>7.1} us   on/off {:.3}",
                us(a),
                us(b),
                us(b) - us(a),
                b.as_secs_f64() / a.as_secs_f64()
            );
        }
        drop((off, on));
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    });
}
