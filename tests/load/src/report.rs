//! Every response recorded, by step and by kind, and the tables printed at
//! the end. Pure: the runner feeds it [`Record`]s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response within the per-request timeout.
    Timeout,
    /// Connection refused, reset, or closed before a response.
    Transport,
    /// Not sent: the in-flight limit was reached (the target is not keeping
    /// up with the rate).
    InFlightLimit,
}

impl Outcome {
    /// The label used in the per-kind table.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Transport => "transport".into(),
            Outcome::InFlightLimit => "in-flight-limit".into(),
        }
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub step: usize,
    pub kind: usize,
    pub result: Outcome,
    pub failed: bool,
    pub latency: Duration,
}

#[derive(Debug, Default)]
struct Counts {
    requests: u64,
    failed: u64,
    non_2xx: u64,
    /// Microseconds, sorted when the report is made.
    latencies: Vec<u32>,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        self.requests += 1;
        self.failed += u64::from(r.failed);
        if !matches!(r.result, Outcome::Status(200..=299)) {
            self.non_2xx += 1;
        }
        if r.result != Outcome::InFlightLimit {
            self.latencies
                .push(u32::try_from(r.latency.as_micros()).unwrap_or(u32::MAX));
        }
    }
}

/// Everything recorded so far.
#[derive(Debug)]
pub struct Stats {
    steps: Vec<(String, Counts)>,
    kinds: Vec<(String, u64, u64, BTreeMap<String, u64>)>,
}

impl Stats {
    pub fn new(kind_names: &[String]) -> Stats {
        Stats {
            steps: Vec::new(),
            kinds: kind_names
                .iter()
                .map(|n| (n.clone(), 0, 0, BTreeMap::new()))
                .collect(),
        }
    }

    /// Starts a step; returns its index.
    pub fn add_step(&mut self, name: &str) -> usize {
        self.steps.push((name.to_owned(), Counts::default()));
        self.steps.len() - 1
    }

    pub fn record(&mut self, r: Record) {
        if let Some((_, counts)) = self.steps.get_mut(r.step) {
            counts.add(&r);
        }
        if let Some((_, requests, failed, results)) = self.kinds.get_mut(r.kind) {
            *requests += 1;
            *failed += u64::from(r.failed);
            *results.entry(r.result.label()).or_default() += 1;
        }
    }

    pub fn failed(&self) -> u64 {
        self.steps.iter().map(|(_, c)| c.failed).sum()
    }

    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|(_, c)| c.requests).sum()
    }

    /// The step table and the kind table. `skip_empty_first` leaves out an
    /// implicit first step nothing was sent in.
    pub fn report(&mut self, skip_empty_first: bool) -> String {
        let mut total = Counts::default();
        let mut rows = Vec::new();
        for (i, (name, counts)) in self.steps.iter_mut().enumerate() {
            total.requests += counts.requests;
            total.failed += counts.failed;
            total.non_2xx += counts.non_2xx;
            total.latencies.extend_from_slice(&counts.latencies);
            if i == 0 && skip_empty_first && counts.requests == 0 {
                continue;
            }
            rows.push(step_row(name, counts));
        }
        rows.push(step_row("total", &mut total));
        let mut out = table(
            &["step", "requests", "failed", "non-2xx", "p50 ms", "p99 ms"],
            &rows,
        );
        out.push('\n');
        let kind_rows: Vec<Vec<String>> = self
            .kinds
            .iter()
            .map(|(name, requests, failed, results)| {
                let results = results
                    .iter()
                    .map(|(label, n)| format!("{label}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    name.clone(),
                    requests.to_string(),
                    failed.to_string(),
                    results,
                ]
            })
            .collect();
        out.push_str(&table(
            &["kind", "requests", "failed", "results"],
            &kind_rows,
        ));
        out
    }
}

fn step_row(name: &str, counts: &mut Counts) -> Vec<String> {
    counts.latencies.sort_unstable();
    let ms = |p| match percentile(&counts.latencies, p) {
        Some(us) => format!("{:.1}", f64::from(us) / 1000.0),
        None => "-".into(),
    };
    vec![
        name.to_owned(),
        counts.requests.to_string(),
        counts.failed.to_string(),
        counts.non_2xx.to_string(),
        ms(0.50),
        ms(0.99),
    ]
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A table with `|` between columns; the first column is left-aligned, the
/// others right-aligned (numbers), except a last text column.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let last_is_text = header.last() == Some(&"results");
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            let left = i == 0 || (last_is_text && i == widths.len() - 1);
            if left {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "{cell:>w$}");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(
        &(widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
            + "\n"),
    );
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize, kind: usize, result: Outcome, failed: bool, ms: u64) -> Record {
        Record {
            step,
            kind,
            result,
            failed,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_report_has_a_row_per_step_a_total_and_results_per_kind() {
        let mut stats = Stats::new(&["items".into(), "anon".into()]);
        let start = stats.add_step("start");
        let a = stats.add_step("wave-1");
        let b = stats.add_step("wave-2");
        stats.record(rec(a, 0, Outcome::Status(200), false, 2));
        stats.record(rec(a, 1, Outcome::Status(401), false, 1));
        stats.record(rec(b, 0, Outcome::Status(502), true, 4));
        stats.record(rec(b, 0, Outcome::Timeout, true, 5000));
        assert_eq!((stats.requests(), stats.failed()), (4, 2));
        assert_eq!(start, 0);
        let text = stats.report(true);
        assert!(!text.contains("start"), "{text}");
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no row {name} in\n{text}"))
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("step"),
            ["step", "requests", "failed", "non-2xx", "p50 ms", "p99 ms"]
        );
        assert_eq!(row("wave-1"), ["wave-1", "2", "0", "1", "1.0", "2.0"]);
        assert_eq!(row("wave-2"), ["wave-2", "2", "2", "2", "4.0", "5000.0"]);
        assert_eq!(row("total"), ["total", "4", "2", "3", "2.0", "5000.0"]);
        assert_eq!(row("items"), ["items", "3", "2", "200:1 502:1 timeout:1"]);
        assert_eq!(row("anon"), ["anon", "1", "0", "401:1"]);
    }
}
