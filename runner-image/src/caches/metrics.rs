//! The caches' own counters as Prometheus metrics, read at each scrape.

use super::FeatureCaches;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::sync::Arc;

/// `eol_cache_hits_total{type,hit}`: the caches' own counters, read at each scrape.
#[derive(Debug)]
pub struct CacheMetrics(pub Arc<FeatureCaches>);

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.counts();
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cache_hits",
            "Cache lookups by type (semantic, embedding, result) and outcome",
            None,
            probe.metric_type(),
        )?;
        for (kind, hits, misses) in counts {
            for (hit, n) in [("true", hits), ("false", misses)] {
                let labels = crate::metrics::CacheLabels {
                    r#type: kind.to_owned(),
                    hit: hit.to_owned(),
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
