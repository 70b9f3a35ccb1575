//! The table per stage and what each stage must show.

use super::{Outage, WINDOW};
use crate::Drill;
use std::sync::atomic::Ordering;

/// A row of a stella-load table: its cells, trimmed.
pub(super) fn cells(line: &str) -> Vec<&str> {
    line.split('|').map(str::trim).collect()
}

/// (requests, failed, non-2xx) of a step in a load's step table.
pub(super) fn step_counts(out: &str, step: &str) -> (u64, u64, u64) {
    out.lines()
        .map(cells)
        .find(|c| c.len() >= 6 && c[0] == step)
        .map(|c| {
            let n = |i: usize| c[i].parse().unwrap_or(0);
            (n(1), n(2), n(3))
        })
        .unwrap_or_default()
}

/// The kind table's rows: (failed, results such as `200:12 transport:1`).
pub(super) fn kind_rows(out: &str) -> Vec<(u64, String)> {
    out.lines()
        .map(cells)
        .filter(|c| c.len() == 4 && c[1].parse::<u64>().is_ok())
        .map(|c| (c[2].parse().unwrap_or(0), c[3].to_owned()))
        .collect()
}

/// Ends the load and the probes, prints the table per stage, and judges.
pub(super) fn verdict(d: &mut Drill, mut o: Outage) {
    let elapsed = o.started.elapsed().as_secs();
    if let Some(last) = o.stages.last_mut() {
        last.seconds = elapsed - last.seconds;
    }
    o.probes.stop.store(true, Ordering::Relaxed);
    for t in o.probes.threads.drain(..) {
        let _ = t.join();
    }
    let mut outs = Vec::new();
    for (class, load) in o.loads.drain(..) {
        let (code, out) = d.end_load_quietly(load);
        outs.push((class, code, out));
    }
    let fresh = o.probes.fresh.lock().map(|v| v.clone()).unwrap_or_default();
    let spiffe = o
        .probes
        .spiffe
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let fresh_in = |st: &str| {
        fresh
            .iter()
            .filter(|(s, _)| s == st)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    };
    let spiffe_in = |st: &str| {
        spiffe
            .iter()
            .filter(|(s, _)| s == st)
            .map(|(_, r)| *r)
            .collect::<Vec<_>>()
    };
    let counts = |statuses: &[u16]| {
        let mut map = std::collections::BTreeMap::new();
        for s in statuses {
            *map.entry(*s).or_insert(0) += 1;
        }
        map.iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };

    d.run.say("");
    d.run.say("Per stage: each load class as 2xx/503/failed (503 expected past max-stale, until the gateway's first");
    d.run
        .say("fetch after the Authority's return, and in the restart window; the refused class as");
    d.run.say("refused-as-expected/failed), the probes by status, staleness and /readyz at the stage's end.");
    d.run.say(format!(
        "{:<28} | {:>4} | {:<17} | {:<17} | {:<12} | {:<12} | {:<19} | {:<9} | {:>5} | {:>6}",
        "stage",
        "s",
        "bearer",
        "dpop",
        "anon",
        "refused",
        "fresh 200/503/401/x",
        "spiffe ok/x",
        "stale",
        "readyz"
    ));
    d.run.say("-----------------------------|------|-------------------|-------------------|--------------|--------------|---------------------|-----------|-------|-------");
    let mut window_failed = 0;
    let mut window_503 = Vec::new();
    for st in &o.stages {
        let mut cols = Vec::new();
        for (class, _, out) in &outs {
            let (req, failed, non2xx) = step_counts(out, &st.name);
            cols.push(match *class {
                "refused" => format!("{}/{failed}", req - failed),
                "anon" => format!("{}/{failed}", req - non2xx),
                _ => format!("{}/{}/{failed}", req - non2xx, non2xx - failed),
            });
            if st.name == WINDOW {
                window_failed += failed;
                if matches!(*class, "bearer" | "dpop") {
                    window_503.push(format!("{class} {}", non2xx - failed));
                }
            } else if failed > 0 {
                d.run.fail(format!(
                    "stage {}: {failed} failed {class} requests ({}/load-{class}.err)",
                    st.name,
                    d.run.relative(&d.run.logs)
                ));
            }
        }
        let f = fresh_in(&st.name);
        let n = |code: u16| f.iter().filter(|r| r.status == code).count();
        let (f200, f503, f401) = (n(200), n(503), n(401));
        let fx = f.len() - f200 - f503 - f401;
        let s = spiffe_in(&st.name);
        let s200 = s.iter().filter(|c| **c == 200).count();
        let sx = s.len() - s200;
        let stale = st.stale.map(|v| format!("{v}")).unwrap_or_default();
        let ready = st.ready.map(|v| v.to_string()).unwrap_or_default();
        d.run.say(format!(
            "{:<28} | {:>4} | {:<17} | {:<17} | {:<12} | {:<12} | {:<19} | {:<9} | {:>5} | {:>6}",
            st.name,
            st.seconds,
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            format!("{f200}/{f503}/{f401}/{fx}"),
            format!("{s200}/{sx}"),
            stale,
            ready
        ));
        // What each probe must show, per stage.
        if st.name == WINDOW {
            continue;
        }
        let fresh_counts = counts(&f.iter().map(|r| r.status).collect::<Vec<_>>());
        if sx > 0 {
            d.run.fail(format!(
                "stage {}: SPIFFE-only requests not 200: {}",
                st.name,
                counts(&s)
            ));
        }
        match st.name.as_str() {
            // The edges: the keys' age passes the limit near the end of the
            // first, and the gateway's next fetch ends the second.
            "warmup" | "3-until-max-stale" | "5-authority-back" => {
                if f401 > 0 {
                    d.run.fail(format!(
                        "stage {}: {f401} fresh tokens got 401 (must be 200 or 503, never 401)",
                        st.name
                    ));
                }
                if fx > 0 {
                    d.run.fail(format!(
                        "stage {}: fresh tokens: {fresh_counts} (wanted 200 or 503)",
                        st.name
                    ));
                }
            }
            "4-past-max-stale" => {
                if f503 == 0 {
                    d.run.fail(format!(
                        "stage {}: no fresh token got 503 ({fresh_counts})",
                        st.name
                    ));
                }
                if f401 > 0 {
                    d.run.fail(format!(
                        "stage {}: {f401} fresh tokens got 401 (must be 503, never 401)",
                        st.name
                    ));
                }
                if f200 + fx > 0 {
                    d.run.fail(format!(
                        "stage {}: fresh tokens: {fresh_counts} (wanted 503 only)",
                        st.name
                    ));
                }
                let bad: Vec<_> = f
                    .iter()
                    .filter(|r| r.status == 503)
                    .filter(|r| {
                        let numeric = r
                            .retry_after
                            .as_deref()
                            .is_some_and(|v| v.parse::<u64>().is_ok());
                        !numeric || r.error.as_deref() != Some("temporarily_unavailable")
                    })
                    .take(3)
                    .map(|r| format!("retry-after={:?} error={:?}", r.retry_after, r.error))
                    .collect();
                let example = f
                    .iter()
                    .find(|r| r.status == 503)
                    .and_then(|r| r.retry_after.clone());
                d.run.check(
                    bad.is_empty(),
                    format!("stage {}: every fresh-token 503 had Retry-After and error temporarily_unavailable (retry-after={example:?})", st.name),
                    format!("stage {}: 503 without Retry-After or with another error: {bad:?}", st.name),
                );
            }
            _ => {
                if f503 + f401 + fx > 0 {
                    d.run.fail(format!(
                        "stage {}: fresh tokens: {fresh_counts} (wanted 200 only)",
                        st.name
                    ));
                }
            }
        }
    }

    // The restart window: its failed requests must all be connection
    // failures (transport, timeout), never a status. The kind tables count
    // results over the whole run, so every failed request of the run that
    // got a status is one too many (failures outside the window are
    // reported above anyway).
    let mut status_failures = 0;
    for (_, _, out) in &outs {
        for (failed, results) in kind_rows(out) {
            let connection: u64 = results
                .split_whitespace()
                .filter_map(|r| r.split_once(':'))
                .filter(|(label, _)| matches!(*label, "transport" | "timeout" | "in-flight-limit"))
                .filter_map(|(_, n)| n.parse::<u64>().ok())
                .sum();
            status_failures += failed.saturating_sub(connection);
        }
    }
    let fw = fresh_in(WINDOW);
    let sw = spiffe_in(WINDOW);
    let fwin = fw
        .iter()
        .filter(|r| !matches!(r.status, 200 | 0 | 503))
        .count();
    let swin = sw.iter().filter(|s| !matches!(**s, 200 | 0)).count();
    let fresh_503 = fw.iter().filter(|r| r.status == 503).count();
    d.run.check(
        status_failures == 0 && fwin == 0 && swin == 0,
        format!(
            "restart window: {window_failed} load requests found no listener (connection failures, no status) while the one gateway process restarted; 503 before its persisted keys were loaded: {} fresh {fresh_503}",
            window_503.join(" ")
        ),
        format!(
            "restart window: {status_failures} failed load requests in the run got a status; probes in the window: fresh {}, spiffe {}",
            counts(&fw.iter().map(|r| r.status).collect::<Vec<_>>()),
            counts(&sw)
        ),
    );
    // Never a 401 for a token that was valid.
    for (class, _, out) in &outs {
        if matches!(*class, "bearer" | "dpop") {
            let has_401 = kind_rows(out)
                .iter()
                .any(|(_, results)| results.split_whitespace().any(|r| r.starts_with("401:")));
            if has_401 {
                d.run.fail(format!(
                    "{class}: some requests got 401 (see {}/load-{class}.err)",
                    d.run.relative(&d.run.logs)
                ));
            }
        }
    }
    let lines = [
        "gateway.out",
        "gateway.err",
        "gateway.1.out",
        "gateway.1.err",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(d.run.logs.join(f))
            .unwrap_or_default()
            .matches("authority_unavailable")
            .count()
    })
    .sum::<usize>();
    d.run.ok(format!(
        "gateway decision log: {lines} lines with reason authority_unavailable"
    ));
    d.run.say("");
    for (class, code, out) in &outs {
        d.run.say(format!("-- load class {class} (stella-load exit {code:?}; failures only in the restart window are expected)"));
        d.run.say(
            out.lines()
                .filter(|l| !l.starts_with("LOAD_"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
step                     | requests | failed | non-2xx | p50 ms | p99 ms
-------------------------|----------|--------|---------|--------|-------
baseline                 |      243 |      0 |       0 |    5.7 |   16.6
3-gateway-restart-window |       14 |      6 |       9 |    2.6 |    8.0
total                    |      257 |      6 |       9 |    5.0 |   16.0

kind        | requests | failed | results
------------|----------|--------|---------------------
dpop        |      200 |      4 | 200:196 transport:3 503:1
hybrid-dpop |       57 |      2 | 200:55 timeout:2
";

    #[test]
    fn step_and_kind_rows_are_read_from_the_load_report() {
        assert_eq!(step_counts(REPORT, "baseline"), (243, 0, 0));
        assert_eq!(step_counts(REPORT, WINDOW), (14, 6, 9));
        assert_eq!(step_counts(REPORT, "absent"), (0, 0, 0));
        assert_eq!(
            kind_rows(REPORT),
            [
                (4, "200:196 transport:3 503:1".to_owned()),
                (2, "200:55 timeout:2".to_owned())
            ]
        );
    }
}
