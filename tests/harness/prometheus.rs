//! Reading values out of Prometheus text exposition.

/// Returns the sum of the samples of metric `name` whose labels include all of `labels`, or `None`
/// when no sample matches.
///
/// `name` is the full sample name (for counters, with the `_total` suffix).
pub fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = split_sample(line) else {
            continue;
        };
        let (sample_name, sample_labels) = match series.find('{') {
            Some(open) => (&series[..open], &series[open + 1..series.len() - 1]),
            None => (series, ""),
        };
        if sample_name != name {
            continue;
        }
        let parsed = parse_labels(sample_labels);
        let all = labels
            .iter()
            .all(|(k, v)| parsed.iter().any(|(pk, pv)| pk == k && pv == v));
        if all {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// Splits `name{labels} value [timestamp]` into the series part and the value.
fn split_sample(line: &str) -> Option<(&str, f64)> {
    let series_end = match line.rfind('}') {
        Some(close) => close + 1,
        None => line.find(char::is_whitespace)?,
    };
    let series = &line[..series_end];
    let value = line[series_end..].split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((series, value))
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((key, value));
        rest = after[end..].trim_start_matches(',').trim();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP pipewarden_collector_accepted_total Items accepted.\n\
        # TYPE pipewarden_collector_accepted_total counter\n\
        pipewarden_collector_accepted_total{signal=\"spans\"} 12\n\
        pipewarden_collector_accepted_total{signal=\"log_records\"} 3\n\
        pipewarden_collector_refused_total{signal=\"spans\",reason=\"decode\"} 2\n\
        pipewarden_collector_refused_total{reason=\"too_large\",signal=\"spans\"} 1 1700000000\n\
        pipewarden_pipeline_queue_depth 0\n";

    #[test]
    fn sums_matching_samples() {
        let accepted = "pipewarden_collector_accepted_total";
        assert_eq!(
            sample_sum(TEXT, accepted, &[("signal", "spans")]),
            Some(12.0)
        );
        assert_eq!(sample_sum(TEXT, accepted, &[]), Some(15.0));
        assert_eq!(
            sample_sum(
                TEXT,
                "pipewarden_collector_refused_total",
                &[("signal", "spans")]
            ),
            Some(3.0)
        );
        assert_eq!(
            sample_sum(TEXT, "pipewarden_pipeline_queue_depth", &[]),
            Some(0.0)
        );
        assert_eq!(
            sample_sum(TEXT, accepted, &[("signal", "metric_points")]),
            None
        );
    }
}
