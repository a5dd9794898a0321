//! The caches' own counters as Prometheus metrics, read at each scrape.

use super::FeatureCaches;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::sync::Arc;

/// `eol_cache_hits_total{type,hit}` and `eol_semantic_verdicts_total{source,verdict}`:
/// the caches' own counters, read at each scrape.
#[derive(Debug)]
pub struct CacheMetrics(pub Arc<FeatureCaches>);

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let probe = ConstCounter::new(0u64);
        {
            let counts = self.0.counts();
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
        }
        let verdicts = self.0.verdict_counts();
        if verdicts.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "semantic_verdicts",
            "Cached answers compared with the model's (cache.semantic.max_error_rate), by source (unproven, sampled) and verdict",
            None,
            probe.metric_type(),
        )?;
        for (source, verdict, n) in verdicts {
            let labels = [("source", source), ("verdict", verdict)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
