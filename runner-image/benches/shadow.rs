//! Shadow mirroring overhead: the serving p99 with shadowing on against off,
//! under the same load, in one run.
//!
//! A serving `eol serve` (the inventory example) and a candidate (the same
//! answers, written differently, with the `EOL_SHADOW_*` settings) share a
//! local Redis. Rounds alternate: off (the candidate stopped with SIGSTOP and
//! its offer deleted, so the serving pods copy nothing) and on (the candidate
//! running and offering). Each round sends `stock_level` calls at a fixed
//! rate (open loop, so both carry the same load; `EOL_BENCH_RATE`, default
//! 200 a second) for `ROUND` and takes the p50 and p99; each on round is
//! compared with the off round before it (a ratio per pair, as these
//! machines are noisy). Target: p99 on / off <= 1.05.
//!
//! Both processes share this machine's cores, so the candidate's own work
//! competes with the serving process here, which it would not on a cluster
//! (its own pod): the figure is an upper bound.
//!
//! Run with `cargo bench -p eol-runner --bench shadow` (Redis from
//! `scripts/redis.sh install`; the sample share defaults to the operator's
//! default, 10 percent; `EOL_BENCH_SAMPLE_PERCENT` changes it).

use eol_core::shadow::{env, offer_key};
use eol_runner::store::LocalRedis;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ROUND: Duration = Duration::from_secs(8);
const PAIRS: usize = 5;

const LAST_LINE: &str =
    r#"    return {"sku": sku, "level": int(value) if value is not None else 0}"#;

struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        signal(&self.child, libc::SIGCONT);
        signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn serve(file: &std::path::Path, redis: &str, extra: &[(&str, String)]) -> Server {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    cmd.args(["serve"])
        .arg(file)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-test-gate"])
        .env("REDIS_URL", redis)
        .env("EOL_EMBEDDINGS", "off")
        .env("RUST_LOG", "warn")
        .env_remove("EOL_LLM_BASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    if extra.iter().any(|(k, _)| *k == env::ID) {
        cmd.env(env::URL, &url);
    }
    let server = Server {
        child: cmd.spawn().expect("eol serve starts"),
        url,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.url)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "eol serve {} did not become ready",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Latencies of `stock_level` calls sent at [`rate`] per second for
/// [`ROUND`] (open loop: the same load whatever the latency); the failures.
async fn round(url: &str, rate: u64) -> (Vec<Duration>, usize) {
    let http = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + ROUND;
    let mut tasks = Vec::new();
    let mut i = 0u64;
    while Instant::now() < end {
        ticks.tick().await;
        i += 1;
        let (http, url) = (http.clone(), format!("{url}/v1/operations/stock_level"));
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"sku": format!("B-{i}")});
            let t = Instant::now();
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    Some(t.elapsed())
                }
                _ => None,
            }
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("a call") {
            Some(d) => all.push(d),
            None => failed += 1,
        }
    }
    all.sort();
    (all, failed)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn comparisons(url: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("eol_shadow_comparisons_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let redis = LocalRedis::start().unwrap_or_else(|e| {
            panic!("no local Redis ({e}): install it with scripts/redis.sh install")
        });
        let examples =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features/examples");
        let source = std::fs::read_to_string(examples.join("inventory.eol")).expect("example");
        let dir = tempfile::tempdir().expect("a temp dir");
        let (serving_dir, candidate_dir) = (dir.path().join("serving"), dir.path().join("candidate"));
        std::fs::create_dir_all(&serving_dir).expect("dir");
        std::fs::create_dir_all(&candidate_dir).expect("dir");
        let candidate_source = source.replace(
            LAST_LINE,
            "    level = int(value) if value is not None else 0\n    return {\"sku\": sku, \"level\": level}",
        );
        assert_ne!(candidate_source, source, "the example changed");
        std::fs::write(serving_dir.join("inventory.eol"), &source).expect("write");
        std::fs::write(candidate_dir.join("inventory.eol"), &candidate_source).expect("write");
        let percent = std::env::var("EOL_BENCH_SAMPLE_PERCENT").unwrap_or_else(|_| "10".into());
        let rate: u64 = std::env::var("EOL_BENCH_RATE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(200);

        let serving = serve(&serving_dir.join("inventory.eol"), &redis.url, &[]).await;
        let candidate = serve(
            &candidate_dir.join("inventory.eol"),
            &redis.url,
            &[
                (env::ID, "bench".to_owned()),
                (env::SAMPLE_PERCENT, percent.clone()),
                (env::TIMEOUT_SECONDS, "10".to_owned()),
            ],
        )
        .await;
        let client = redis::Client::open(redis.url.as_str()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis connection");
        let key = offer_key("inventory");

        // Warm-up, shadowing on.
        wait_offer(&mut conn, &key, true).await;
        let _ = round(&serving.url, rate).await;

        println!(
            "serving p99 with shadowing on ({percent}% sampled) against off, {rate} calls/s, {} s rounds",
            ROUND.as_secs()
        );
        println!("pair  off p50   off p99   on p50    on p99    p99 on/off  calls off/on  compared");
        let mut ratios = Vec::new();
        for pair in 1..=PAIRS {
            // Off: the offer gone (the serving pod sees it within 2 s, and the
            // copies in flight land), then the candidate stopped.
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("DEL");
            tokio::time::sleep(Duration::from_secs(3)).await;
            signal(&candidate.child, libc::SIGSTOP);
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("DEL");
            let before_off = comparisons(&serving.url).await;
            let (off, off_failed) = round(&serving.url, rate).await;
            let compared_off = comparisons(&serving.url).await - before_off;
            // On.
            signal(&candidate.child, libc::SIGCONT);
            wait_offer(&mut conn, &key, true).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before_on = comparisons(&serving.url).await;
            let (on, on_failed) = round(&serving.url, rate).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let compared_on = comparisons(&serving.url).await - before_on;
            assert_eq!(off_failed + on_failed, 0, "failed calls: off {off_failed}, on {on_failed}");
            assert_eq!(compared_off, 0.0, "nothing is compared with shadowing off");
            assert!(compared_on > 0.0, "shadowing on compared nothing");
            let ratio = ms(quantile(&on, 0.99)) / ms(quantile(&off, 0.99));
            ratios.push(ratio);
            println!(
                "{pair:>4}  {:>7.2}   {:>7.2}   {:>7.2}   {:>7.2}   {ratio:>10.3}  {:>5}/{:<5}  {compared_on:>8}",
                ms(quantile(&off, 0.5)),
                ms(quantile(&off, 0.99)),
                ms(quantile(&on, 0.5)),
                ms(quantile(&on, 0.99)),
                off.len(),
                on.len()
            );
        }
        ratios.sort_by(f64::total_cmp);
        let median = (ratios[(ratios.len() - 1) / 2] + ratios[ratios.len() / 2]) / 2.0;
        println!("median p99 on/off: {median:.3} (target <= 1.05)");
        println!("p99 on/off by pair, sorted: {ratios:.3?}");
        drop(candidate);
        drop(serving);
    });
}

/// Waits until the candidate's offer is (or is not) in Redis.
async fn wait_offer(conn: &mut redis::aio::MultiplexedConnection, key: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(conn)
            .await
            .expect("EXISTS");
        if exists == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the candidate's offer did not appear"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
