//! What the fleet bench measures with: the operator's API requests and
//! reconciles, its CPU and memory, latencies and their percentiles, and
//! creating and waiting for many objects at once.

use super::*;
/// The operator's API requests so far, by (method, resource).
pub(crate) async fn requests() -> metrics::Requests {
    metrics::requests(&metrics::text(LISTEN).await)
}

/// Feature reconciles so far.
pub(crate) async fn feature_reconciles() -> f64 {
    metrics::counter(
        &metrics::text(LISTEN).await,
        "eol_operator_reconciles_total",
        "controller=\"feature\"",
    )
}

pub(crate) fn total(w: &BTreeMap<String, f64>) -> f64 {
    w.values().fold(0.0, |a, b| a + b)
}

/// The operator's resident and CPU use, sampled every 500 ms.
#[derive(Clone, Default)]
pub(crate) struct Usage {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
}

impl Usage {
    pub(crate) fn start(operator: Arc<tokio::sync::Mutex<eol_kind_tests::Operator>>) -> Self {
        let usage = Self::default();
        let samples = usage.samples.clone();
        tokio::spawn(async move {
            loop {
                let pid = operator.lock().await.pid();
                if let Some(mib) = pid.and_then(rss_mib) {
                    samples.lock().unwrap().push((Instant::now(), mib));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        usage
    }

    /// Peak RSS (MiB) since `since`.
    pub(crate) fn peak(&self, since: Instant) -> f64 {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, m)| *m)
            .fold(0.0, f64::max)
    }

    /// The latest RSS sample (MiB).
    pub(crate) fn now(&self) -> f64 {
        self.samples
            .lock()
            .unwrap()
            .last()
            .map(|(_, m)| *m)
            .unwrap_or(0.0)
    }
}

pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds the process has used (user + system; Linux's 100 ticks/s).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is 3rd, utime 14th, stime 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Creates `objects` as `kubectl apply` creates new ones (GET, 404, POST),
/// `concurrency` at a time.
pub(crate) async fn apply_all<K>(api: &Api<K>, objects: Vec<K>, concurrency: usize)
where
    K: Resource
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move {
                if api.get_opt(&o.name_any()).await.unwrap().is_none() {
                    api.create(&PostParams::default(), &o).await.unwrap();
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

/// Watches `api` (objects matching `labels`) until every name in `names`
/// satisfies `done`; returns when each first did.
pub(crate) async fn until_all<K>(
    api: Api<K>,
    labels: &str,
    names: HashSet<String>,
    key: impl Fn(&K) -> Option<String>,
    done: impl Fn(&K) -> bool,
) -> HashMap<String, Instant>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut seen = HashMap::new();
    let config = watcher::Config::default().labels(labels);
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let start = Instant::now();
    while seen.len() < names.len() {
        let next = tokio::time::timeout(Duration::from_secs(60), stream.try_next()).await;
        assert!(
            start.elapsed() < PHASE_LIMIT,
            "{}/{} done after {:?}",
            seen.len(),
            names.len(),
            PHASE_LIMIT
        );
        let Ok(Ok(Some(event))) = next else { continue };
        let objects: Vec<K> = match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
            _ => vec![],
        };
        for o in objects {
            if let Some(k) = key(&o)
                && names.contains(&k)
                && !seen.contains_key(&k)
                && done(&o)
            {
                seen.insert(k, Instant::now());
            }
        }
    }
    seen
}

pub(crate) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn latencies(
    created: &HashMap<String, Instant>,
    at: &HashMap<String, Instant>,
) -> Vec<f64> {
    at.iter()
        .filter_map(|(k, t)| Some(t.duration_since(*created.get(k)?).as_secs_f64()))
        .collect()
}

pub(crate) fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status.as_ref().is_some_and(|s| {
        s.ready_replicas == Some(want)
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.observed_generation >= d.metadata.generation
    })
}
