//! Prometheus text exposition, parsed into samples a test can look up by
//! name and labels.

use std::collections::BTreeMap;

/// One Prometheus text scrape.
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split("\",") {
                        if let Some((k, v)) = pair.split_once("=\"") {
                            labels.insert(k.trim().to_owned(), v.trim_end_matches('"').to_owned());
                        }
                    }
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// The sample `name` whose labels include every pair in `labels`
    /// (summed if several series match).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        if matching.is_empty() {
            None
        } else {
            Some(matching.iter().sum())
        }
    }

    pub fn get(&self, name: &str) -> f64 {
        self.value(name, &[])
            .unwrap_or_else(|| panic!("metric {name} is not exposed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP stella_requests_total Requests by decision.
# TYPE stella_requests_total counter
stella_requests_total{decision=\"allow\",route=\"echo-read\"} 3
stella_requests_total{decision=\"deny\",route=\"echo-read\",reason=\"invalid_token\"} 2
stella_requests_total{decision=\"deny\",route=\"echo-admin\",reason=\"scope\"} 5

stella_jwks_keys 2
stella_latency_seconds_sum 0.25
not a sample line
stella_broken{a=\"b\"} NaNx
";

    #[test]
    fn a_sample_is_found_by_name_and_a_subset_of_its_labels() {
        let m = Metrics::parse(SCRAPE);
        assert_eq!(
            m.value("stella_requests_total", &[("decision", "allow")]),
            Some(3.0)
        );
        assert_eq!(
            m.value(
                "stella_requests_total",
                &[("route", "echo-read"), ("reason", "invalid_token")]
            ),
            Some(2.0)
        );
        assert_eq!(m.get("stella_jwks_keys"), 2.0);
        assert_eq!(m.get("stella_latency_seconds_sum"), 0.25);
    }

    #[test]
    fn several_matching_series_are_summed_and_no_match_is_none() {
        let m = Metrics::parse(SCRAPE);
        assert_eq!(
            m.value("stella_requests_total", &[("decision", "deny")]),
            Some(7.0)
        );
        assert_eq!(m.value("stella_requests_total", &[]), Some(10.0));
        assert_eq!(
            m.value("stella_requests_total", &[("decision", "bypass")]),
            None
        );
        assert_eq!(m.value("stella_broken", &[]), None, "unparsable value");
        assert_eq!(m.value("stella_requests", &[]), None, "names match whole");
    }

    #[test]
    #[should_panic(expected = "metric stella_missing is not exposed")]
    fn get_names_a_metric_that_is_not_exposed() {
        Metrics::parse(SCRAPE).get("stella_missing");
    }
}
