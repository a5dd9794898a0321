//! Shadow mirroring overhead: the serving p99 with shadowing on against off,
//! under the same load, in one run.
//!
//! A serving `eol serve` (the inventory example) and a candidate (the same
//! answers, written differently, with the `EOL_SHADOW_*` settings) share a
//! local Redis. Rounds alternate: off (the candidate stopped with SIGSTOP and
//! its offer deleted, so the serving pods copy nothing) and on (the candidate
//! running and offering). Each round sends `stock_level` calls at a fixed
//! rate (open loop, so both carry the same load) and keeps every latency.
//!
//! The headline figure pools the latencies of all off rounds and of all on
//! rounds and compares their p99s (target: pooled p99 on / off <= 1.05): a
//! p99 of a few thousand calls rests on a few dozen of them, so one round's
//! p99 is noisy, and the pool has as many tail calls as all the rounds
//! together. Each on round is still compared with the off round before it
//! (a p99 ratio per pair), to show the spread and any drift.
//!
//! CPU pinning (with at least 2 CPUs): the serving process runs alone on the
//! first CPU this bench may use, and the candidate, Redis and the bench's own
//! load generator on the second. On a cluster the candidate runs in its own
//! pod (and Redis in another); pinning keeps their work off the serving
//! process's core, so the figure is what mirroring costs the serving process
//! itself (the copy, the HTTP send, the Redis transaction). The load
//! generator still shares its core with the candidate, so the candidate's
//! work can still delay the measuring side a little in on rounds. With a
//! single CPU nothing is pinned (the bench says so) and everything competes
//! for it, as before.
//!
//! Run with `cargo bench -p eol-runner --bench shadow` (Redis from
//! `scripts/redis.sh install`). Settings, from the environment:
//! - `EOL_BENCH_SAMPLE_PERCENT`: the share of calls copied (default 10, the
//!   operator's default);
//! - `EOL_BENCH_RATE`: calls a second (default 200);
//! - `EOL_BENCH_PAIRS`: off/on pairs of rounds (default 8);
//! - `EOL_BENCH_ROUND_SECONDS`: the length of each round (default 8).
//!
//! A full run takes about `PAIRS * (2 * ROUND_SECONDS + 8)` seconds after a
//! warm-up round, e.g. 3.5 minutes with the defaults.

use eol_core::shadow::{env, offer_key};
use eol_runner::store::LocalRedis;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Default number of off/on pairs (`EOL_BENCH_PAIRS`).
const PAIRS: u64 = 8;
/// Default round length in seconds (`EOL_BENCH_ROUND_SECONDS`).
const ROUND_SECONDS: u64 = 8;
/// Default calls a second (`EOL_BENCH_RATE`).
const RATE: u64 = 200;

/// The example's last line, which the candidate writes differently.
const LAST_LINE: &str =
    r#"    return {"sku": sku, "level": int(value) if value is not None else 0}"#;

/// The CPUs processes are pinned to.
#[derive(Clone, Copy, Debug)]
struct Pinning {
    /// The serving `eol serve`, alone.
    serving: usize,
    /// Everything else: the candidate, Redis and this bench.
    rest: usize,
}

impl Pinning {
    /// The first two CPUs this process may run on, when it may run on at
    /// least two (`available_parallelism`); `None` otherwise.
    fn choose() -> Option<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        if n < 2 {
            return None;
        }
        match affinity(0).as_slice() {
            [serving, rest, ..] => Some(Pinning {
                serving: *serving,
                rest: *rest,
            }),
            _ => None,
        }
    }
}

/// The set holding `cpu` alone.
fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    assert!(
        cpu < 8 * size_of::<libc::cpu_set_t>(),
        "CPU {cpu} out of range"
    );
    // SAFETY: `cpu` is within the set, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Restricts thread `tid` (0: the calling thread) to `set`; threads and
/// processes it starts afterwards inherit it.
fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs thread `tid` (0: the calling thread; a pid: its main thread) may
/// run on; empty if that cannot be read.
fn affinity(tid: libc::pid_t) -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..8 * size_of::<libc::cpu_set_t>())
        // SAFETY: `cpu` is within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins every thread of process `pid` to `cpu` (for a process started
/// elsewhere, so not through `pre_exec`).
fn pin_process(pid: u32, cpu: usize) -> std::io::Result<()> {
    let set = cpu_set(cpu);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = task?.file_name().to_str().and_then(|t| t.parse().ok()) {
            set_affinity(tid, &set)?;
        }
    }
    Ok(())
}

/// Redis's own pid, from `INFO server`.
async fn redis_pid(conn: &mut redis::aio::MultiplexedConnection) -> Option<u32> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// A positive whole number from the environment variable `name`, else `default`.
fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name}={v}: expected a positive whole number"),
        },
        Err(_) => default,
    }
}

/// A running `eol serve`, stopped when dropped.
struct Server {
    /// The process.
    child: std::process::Child,
    /// Its base URL.
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

/// Sends `sig` to `child`.
fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `eol serve` on `file` with Redis at `redis` and the `extra`
/// environment, pinned to `cpu` if given, and waits until it is ready.
async fn serve(
    file: &std::path::Path,
    redis: &str,
    extra: &[(&str, String)],
    cpu: Option<usize>,
) -> Server {
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
    if let Some(cpu) = cpu {
        let set = cpu_set(cpu);
        // SAFETY: sched_setaffinity(2) is a plain syscall on data copied
        // into the closure, safe between fork and exec.
        unsafe {
            cmd.pre_exec(move || set_affinity(0, &set));
        }
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

/// Latencies of `stock_level` calls sent at `rate` per second for `length`
/// (open loop: the same load whatever the latency), sorted; the failures.
async fn round(url: &str, rate: u64, length: Duration) -> (Vec<Duration>, usize) {
    let http = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + length;
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

/// The `q` quantile of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `d` in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The serving process's count of shadow comparisons so far.
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

/// Runs the warm-up and the off/on pairs and prints the figures.
fn main() {
    let pairs = setting("EOL_BENCH_PAIRS", PAIRS);
    let round_length = Duration::from_secs(setting("EOL_BENCH_ROUND_SECONDS", ROUND_SECONDS));
    let rate = setting("EOL_BENCH_RATE", RATE);
    let percent = std::env::var("EOL_BENCH_SAMPLE_PERCENT").unwrap_or_else(|_| "10".into());

    // Pinned before any thread or process is started, so the runtime's
    // threads and Redis inherit the load generator's CPU.
    let pinning = Pinning::choose();
    let rt = match pinning {
        Some(p) => {
            set_affinity(0, &cpu_set(p.rest)).expect("pin the bench to its CPU");
            // One CPU for the load generator: one thread is enough.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        }
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    };
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

        let serving = serve(
            &serving_dir.join("inventory.eol"),
            &redis.url,
            &[],
            pinning.map(|p| p.serving),
        )
        .await;
        let candidate = serve(
            &candidate_dir.join("inventory.eol"),
            &redis.url,
            &[
                (env::ID, "bench".to_owned()),
                (env::SAMPLE_PERCENT, percent.clone()),
                (env::TIMEOUT_SECONDS, "10".to_owned()),
            ],
            pinning.map(|p| p.rest),
        )
        .await;
        let client = redis::Client::open(redis.url.as_str()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis connection");
        let key = offer_key("inventory");

        match pinning {
            Some(p) => {
                // Redis inherited the bench's CPU; pinned again by pid so
                // that does not rest on how LocalRedis starts it.
                let redis_cpus = match redis_pid(&mut conn).await {
                    Some(pid) => {
                        pin_process(pid, p.rest).expect("pin Redis");
                        format!("{:?}", affinity(pid as libc::pid_t))
                    }
                    None => "unknown (no pid from INFO)".to_owned(),
                };
                println!(
                    "CPU pinning: serving on CPU {} (allowed {:?}); candidate {:?}, Redis {redis_cpus}, bench {:?}",
                    p.serving,
                    affinity(serving.child.id() as libc::pid_t),
                    affinity(candidate.child.id() as libc::pid_t),
                    affinity(0),
                );
            }
            None => println!(
                "CPU pinning off (fewer than 2 CPUs): serving, candidate, Redis and bench share the CPU"
            ),
        }

        // Warm-up, shadowing on.
        wait_offer(&mut conn, &key, true).await;
        let _ = round(&serving.url, rate, round_length).await;

        println!(
            "serving p99 with shadowing on ({percent}% sampled) against off, {rate} calls/s, {pairs} pairs of {} s rounds",
            round_length.as_secs()
        );
        println!("pair  off p50   off p99   on p50    on p99    p99 on/off  calls off/on  compared");
        let mut ratios = Vec::new();
        let (mut pooled_off, mut pooled_on) = (Vec::new(), Vec::new());
        for pair in 1..=pairs {
            // Off: the offer gone (the serving pod sees it within 2 s, and the
            // copies in flight land), then the candidate stopped.
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("DEL");
            tokio::time::sleep(Duration::from_secs(3)).await;
            signal(&candidate.child, libc::SIGSTOP);
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("DEL");
            let before_off = comparisons(&serving.url).await;
            let (off, off_failed) = round(&serving.url, rate, round_length).await;
            let compared_off = comparisons(&serving.url).await - before_off;
            // On.
            signal(&candidate.child, libc::SIGCONT);
            wait_offer(&mut conn, &key, true).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before_on = comparisons(&serving.url).await;
            let (on, on_failed) = round(&serving.url, rate, round_length).await;
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
            pooled_off.extend(off);
            pooled_on.extend(on);
        }
        pooled_off.sort();
        pooled_on.sort();
        let (off_p99, on_p99) = (quantile(&pooled_off, 0.99), quantile(&pooled_on, 0.99));
        println!(
            "pooled over {pairs} pairs: off p50 {:.2} ms, p99 {:.2} ms ({} calls); on p50 {:.2} ms, p99 {:.2} ms ({} calls)",
            ms(quantile(&pooled_off, 0.5)),
            ms(off_p99),
            pooled_off.len(),
            ms(quantile(&pooled_on, 0.5)),
            ms(on_p99),
            pooled_on.len(),
        );
        println!(
            "pooled p99 on/off: {:.3} (target <= 1.05)",
            ms(on_p99) / ms(off_p99)
        );
        ratios.sort_by(f64::total_cmp);
        let median = (ratios[(ratios.len() - 1) / 2] + ratios[ratios.len() / 2]) / 2.0;
        println!("p99 on/off by pair: median {median:.3}, sorted {ratios:.3?}");
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
