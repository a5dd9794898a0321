//! The operator's own API request counters (`/metrics`,
//! `eol_operator_api_requests_total{method,resource}`), read by the fleet test
//! and bench to count what a lifecycle costs the API server.

use std::collections::{BTreeMap, HashMap};

/// Requests so far, by `(method, resource)`.
pub type Requests = HashMap<(String, String), f64>;

/// The operator's metrics text at `listen` (`127.0.0.1:PORT`), once it answers.
pub async fn text(listen: &str) -> String {
    let url = format!("http://{listen}/metrics");
    for _ in 0..120 {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
            && let Ok(body) = r.text().await
        {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("the operator's {url} did not answer within 30 s");
}

/// The API request counters in `text`.
pub fn requests(text: &str) -> Requests {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("eol_operator_api_requests_total{") else {
            continue;
        };
        let Some((labels, count)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        out.insert(
            (label("method"), label("resource")),
            count.trim().parse().unwrap_or(0.0),
        );
    }
    out
}

/// A counter of `text` with exactly these labels (`controller="feature"`), or 0.
pub fn counter(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Writes (POST, PUT, PATCH, DELETE) from `before` to `after`, by
/// `"METHOD resource"`; the leader Lease's renewals are the process's, not a
/// lifecycle's, and are left out.
pub fn writes(before: &Requests, after: &Requests) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((method, resource), n) in after {
        if method == "GET" || resource == "leases" {
            continue;
        }
        let d = n - before
            .get(&(method.clone(), resource.clone()))
            .unwrap_or(&0.0);
        if d > 0.0 {
            *out.entry(format!("{method} {resource}")).or_insert(0.0) += d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_method_and_resource_without_reads_and_leases() {
        let before = requests(
            "eol_operator_api_requests_total{method=\"POST\",resource=\"pods\"} 2\n\
             eol_operator_api_requests_total{method=\"PATCH\",resource=\"leases\"} 5\n",
        );
        let after = requests(
            "eol_operator_api_requests_total{method=\"POST\",resource=\"pods\"} 5\n\
             eol_operator_api_requests_total{method=\"GET\",resource=\"pods\"} 9\n\
             eol_operator_api_requests_total{method=\"PATCH\",resource=\"featureruns/status\"} 4\n\
             eol_operator_api_requests_total{method=\"PATCH\",resource=\"leases\"} 8\n",
        );
        let w = writes(&before, &after);
        assert_eq!(
            w,
            BTreeMap::from([
                ("PATCH featureruns/status".to_owned(), 4.0),
                ("POST pods".to_owned(), 3.0)
            ])
        );
        let text = "eol_operator_reconciles_total{controller=\"feature\"} 51\n";
        assert_eq!(
            counter(
                text,
                "eol_operator_reconciles_total",
                "controller=\"feature\""
            ),
            51.0
        );
    }
}
