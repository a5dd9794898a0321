//! Helpers shared by the tests of eol-vector (each test file has `mod common;`;
//! the benches include this file with `#[path]`): the test Redis, a server of
//! one's own from the bundle of `scripts/redis.sh install`, unique names, and
//! deterministic embeddings (bag of words, seeded random).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

/// What most tests need of the Redis at `EOL_TEST_REDIS_URL` / `REDIS_URL`.
#[allow(dead_code)]
pub const SEARCH: &str = "Redis with the search module";

/// `EOL_TEST_REDIS_URL` (set by scripts/test.sh), else `REDIS_URL` (from
/// `eval "$(scripts/redis.sh start)"`); `needs` says what the tests need of it.
#[allow(dead_code)]
pub fn test_redis_url(needs: &str) -> String {
    std::env::var("EOL_TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| {
            panic!(
                "EOL_TEST_REDIS_URL (or REDIS_URL) is not set: these tests need {needs}; \
                 run `eval \"$(scripts/redis.sh start)\"` first"
            )
        })
}

/// A connection to `url`, or a panic that names the script starting Redis.
#[allow(dead_code)]
pub async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a valid REDIS_URL");
    ConnectionManager::new(client).await.unwrap_or_else(|e| {
        panic!("cannot connect to {url} ({e}); start it with scripts/redis.sh start")
    })
}

/// A connection to the test Redis with the search module.
#[allow(dead_code)]
pub async fn conn() -> ConnectionManager {
    connect(&test_redis_url(SEARCH)).await
}

/// A name no other test (or earlier run) uses.
#[allow(dead_code)]
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The dimension of [`bag_of_words`].
#[allow(dead_code)]
pub const DIMS: usize = 64;

/// Words hashed (FNV-1a, lower-cased) into [`DIMS`] buckets, counted,
/// L2-normalised; all zeros for a text without words.
#[allow(dead_code)]
pub fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        v[(fnv1a(&word.to_lowercase()) % DIMS as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The FNV-1a hash of `text`'s bytes.
#[allow(dead_code)]
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A unit vector of [`DIMS`] drawn at random, seeded by `text`'s hash: the
/// same text gives the same vector, and different texts lie far apart.
#[allow(dead_code)]
pub fn seeded_random(text: &str) -> Vec<f32> {
    let mut x = fnv1a(text) | 1;
    let mut v: Vec<f32> = (0..DIMS)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

/// A free loopback port.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The directory of the Redis bundle (`scripts/redis.sh path`).
#[allow(dead_code)]
pub fn redis_bundle() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("path")
        .output()
        .expect("run scripts/redis.sh path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A `redis-server` of one's own, killed on drop.
#[allow(dead_code)]
pub struct OwnRedis {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the bundle's `redis-server` on a free port (without persistence, with
/// RediSearch and RedisJSON when `modules`) and waits until it listens;
/// `missing` is the panic message when the bundle has no server.
#[allow(dead_code)]
pub fn own_redis(modules: bool, missing: impl FnOnce(&Path) -> String) -> OwnRedis {
    let bundle = redis_bundle();
    let server = bundle.join("bin/redis-server");
    assert!(server.exists(), "{}", missing(&server));
    let port = free_port();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = Command::new(&server);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path());
    if modules {
        command
            .arg("--loadmodule")
            .arg(bundle.join("lib/redisearch.so"))
            .arg("--loadmodule")
            .arg(bundle.join("lib/rejson.so"));
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", server.display()));
    let redis = OwnRedis {
        url: format!("redis://127.0.0.1:{port}"),
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port} within 10 s",
            server.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    redis
}
