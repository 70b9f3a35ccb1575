//! The table per stage and what each stage must show.

use super::Outage;
use crate::load::{kind_rows, step_counts};
use crate::Drill;
use std::sync::atomic::Ordering;

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
    d.run.say("Per stage: each load class as 2xx/503/failed (503 expected past max-stale and until the gateway's");
    d.run.say("first fetch after the Authority's return; the refused class as refused-as-expected/failed, anon as");
    d.run
        .say("2xx/failed), the probes by status, staleness and /readyz at the stage's end.");
    let mut head = format!("{:<20} | {:>4}", "stage", "s");
    let mut rule = format!("{:-<21}|{:-<6}", "", "");
    for (class, _, _) in &outs {
        head.push_str(&format!(" | {class:<14}"));
        rule.push_str(&format!("|{:-<16}", ""));
    }
    head.push_str(&format!(
        " | {:<19} | {:<9} | {:>5} | {:>6}",
        "fresh 200/503/401/x", "spiffe ok/x", "stale", "readyz"
    ));
    rule.push_str(&format!("|{:-<21}|{:-<11}|{:-<7}|{:-<7}", "", "", "", ""));
    d.run.say(head);
    d.run.say(rule);
    for st in &o.stages {
        let mut row = format!("{:<20} | {:>4}", st.name, st.seconds);
        for (class, _, out) in &outs {
            let (req, failed, non2xx) = step_counts(out, &st.name);
            let cell = match *class {
                "refused" => format!("{}/{failed}", req - failed),
                "anon" => format!("{}/{failed}", req - non2xx),
                _ => format!("{}/{}/{failed}", req - non2xx, non2xx - failed),
            };
            row.push_str(&format!(" | {cell:<14}"));
            if failed > 0 {
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
        row.push_str(&format!(
            " | {:<19} | {:<9} | {:>5} | {:>6}",
            format!("{f200}/{f503}/{f401}/{fx}"),
            format!("{s200}/{sx}"),
            stale,
            ready
        ));
        d.run.say(row);
        // What each probe must show, per stage.
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

    // Never a 401 for a token that was valid.
    for (class, _, out) in &outs {
        if matches!(*class, "bearer" | "dpop" | "opaque" | "claims") {
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
    let lines = ["gateway.out", "gateway.err", "gateway-upgraded.log"]
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
    crate::load::say_outputs(&d.run, &outs);
}
