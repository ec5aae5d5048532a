//! Whether sessions share a primary metric: `ls` says when it sorted
//! within each of several, `table` and `compare` refuse to pool them.

use super::Run;

/// The distinct primary metrics of `runs`, with their direction arrows,
/// when there is more than one (values of different metrics are not
/// comparable: `ls` says it sorted within each).
pub fn mixed_metrics(runs: &[Run]) -> Option<String> {
    let mut metrics: Vec<String> = runs
        .iter()
        .filter(|r| !r.meta.primary_metric.is_empty())
        .map(|r| {
            let arrow = if r.meta.higher_is_better {
                "↑"
            } else {
                "↓"
            };
            format!("{} {arrow}", r.meta.primary_metric)
        })
        .collect();
    metrics.sort();
    metrics.dedup();
    (metrics.len() > 1).then(|| metrics.join(", "))
}

/// The primary metric that `(metric, session)` pairs share, or an error
/// that counts each metric's sessions and names a few (sessions of two
/// workloads failed on the second's metric, "has no metric `primary_mse`";
/// the suite's 84 were each named); `what` is the command's advice.
pub fn shared_primary_metric<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let mut by_metric: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (metric, session) in pairs {
        by_metric.entry(metric).or_default().push(session);
    }
    if by_metric.len() <= 1 {
        return Ok(by_metric.into_keys().next().map(str::to_string));
    }
    let each: Vec<String> = by_metric
        .iter()
        .map(|(metric, sessions)| {
            let names: Vec<String> = sessions.iter().map(|s| s.to_string()).collect();
            let count = match names.len() {
                1 => "1 session".to_string(),
                n => format!("{n} sessions"),
            };
            format!("`{metric}` ({count}: {})", super::groups::few(&names))
        })
        .collect();
    anyhow::bail!(
        "these sessions have different primary metrics, so they come from different workloads or \
         configs: {}; {what}, or name a metric they all report with --metric",
        each.join("; ")
    )
}
