//! The game day's tables and verdict: per phase, each load class's
//! requests, failures and p99 and the mTLS probe's; the refusals the
//! gateways logged by status and reason; the unknown kids' answers; the
//! slow clients; the resident sets.

use super::{GameDay, Timing};
use crate::load::{kind_rows, step_counts, step_p99};
use crate::stack::alive;
use crate::Drill;
use std::collections::BTreeMap;
use std::time::Duration;
use stella_test_support::Process;

/// Ends the load and the faults' threads, stops both replicas (so their
/// decision logs are complete), prints the tables and judges. `b` is
/// replica b's first process (exited already if it was upgraded).
pub(super) fn verdict(d: &mut Drill, mut g: GameDay, t: &Timing, mut b: Process) {
    let elapsed = g.started.elapsed().as_secs();
    if let Some(last) = g.phases.last_mut() {
        last.seconds = elapsed.saturating_sub(last.seconds);
    }
    g.probe.stop();
    if let Some(slow) = g.slow.as_mut() {
        slow.join();
    }
    if let Some(kids) = g.kids.as_mut() {
        kids.join();
    }
    let mut outs = Vec::new();
    for (class, load) in g.loads.drain(..) {
        let (code, out) = d.end_load_quietly(load);
        outs.push((class, code, out));
    }
    // The gateways write their decision lines in batches: stopped (SIGTERM,
    // they drain and flush), every line is in their logs.
    d.stop_gateway();
    b.stop("TERM", Duration::from_secs(15));
    if let Some(pid) = d.stack.adopted.take() {
        let _ = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status();
        if d.run
            .wait_for(Duration::from_secs(15), || !alive(pid))
            .is_none()
        {
            d.stack.adopted = Some(pid);
        }
    }
    let probed = g.probe.seen.lock().map(|v| v.clone()).unwrap_or_default();

    d.run.say("");
    d.run.say("Per phase (from one injected event to the next; reloads run throughout): each load class as");
    d.run.say("requests/failed p99 ms (dpop: requests/503/failed p99), the mTLS probe as ok/failed p99 ms, each");
    d.run.say("replica's resident set when the phase began.");
    let mut head = format!("{:<24} | {:>4} | {:<38}", "phase", "s", "during");
    let mut rule = format!("{:-<25}|{:-<6}|{:-<40}", "", "", "");
    for (class, _, _) in &outs {
        head.push_str(&format!(" | {class:<22}"));
        rule.push_str(&format!("|{:-<24}", ""));
    }
    head.push_str(&format!(" | {:<18} | {:<11}", "mtls", "rss MB a/b"));
    rule.push_str(&format!("|{:-<20}|{:-<12}", "", ""));
    d.run.say(head);
    d.run.say(rule);
    for ph in &g.phases {
        let mut row = format!("{:<24} | {:>4} | {:<38}", ph.name, ph.seconds, ph.active);
        for (class, _, out) in &outs {
            let (req, failed, non2xx) = step_counts(out, &ph.name);
            let p99 = step_p99(out, &ph.name).map_or("-".into(), |v| format!("{v}"));
            let cell = match *class {
                "dpop" => format!("{req}/{}/{failed} {p99}", non2xx - failed),
                _ => format!("{req}/{failed} {p99}"),
            };
            row.push_str(&format!(" | {cell:<22}"));
        }
        let mine: Vec<&super::faults::Probed> =
            probed.iter().filter(|p| p.phase == ph.name).collect();
        let ok = mine.iter().filter(|p| p.status == 200).count();
        let mut ms: Vec<f64> = mine.iter().map(|p| p.ms).collect();
        ms.sort_by(f64::total_cmp);
        let p99 = (!ms.is_empty())
            .then(|| ms[((ms.len() * 99).div_ceil(100)).saturating_sub(1)])
            .map_or("-".into(), |v| format!("{v:.1}"));
        let rss: Vec<String> = ph
            .rss
            .iter()
            .map(|k| k.map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0)))
            .collect();
        row.push_str(&format!(
            " | {:<18} | {:<11}",
            format!("{ok}/{} {p99}", mine.len() - ok),
            rss.join("/")
        ));
        d.run.say(row);
    }

    // Failed requests: the loads' own verdicts and the probe's.
    d.run.say("");
    let mut failed_total = 0;
    for (class, code, out) in &outs {
        let (req, failed, non2xx) = step_counts(out, "total");
        failed_total += failed;
        let results: Vec<String> = kind_rows(out)
            .into_iter()
            .filter(|(f, _)| *f > 0)
            .map(|(f, r)| format!("{f} failed ({r})"))
            .collect();
        d.run.check(
            failed == 0 && *code == Some(0),
            format!("load {class}: {req} requests, 0 failed ({non2xx} non-2xx, each one its kind expects)"),
            format!(
                "load {class}: {failed} failed of {req} (exit {code:?}): {}; see {}/load-{class}.err",
                results.join("; "),
                d.run.relative(&d.run.logs)
            ),
        );
    }
    let probe_failed: Vec<String> = probed
        .iter()
        .filter(|p| p.status != 200)
        .take(10)
        .map(|p| format!("{} {} {}", p.phase, p.kind, p.status))
        .collect();
    let probe_failures = probed.iter().filter(|p| p.status != 200).count();
    d.run.check(
        probe_failures == 0,
        format!("mtls probe: {} requests, all 200", probed.len()),
        format!(
            "mtls probe: {probe_failures} of {} not 200 (first: {probe_failed:?})",
            probed.len()
        ),
    );
    failed_total += probe_failures as u64;

    // The refusals the gateways logged, by status and reason.
    let mut reasons: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &g.replicas {
        for file in &r.logs {
            let text = std::fs::read_to_string(d.run.logs.join(file)).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| l.contains("stella_gateway::decision"))
            {
                let field = |name: &str| {
                    let at = line.find(&format!(" {name}="))? + name.len() + 2;
                    let rest = &line[at..];
                    let value = rest.strip_prefix('"').map_or_else(
                        || rest.split(' ').next().unwrap_or_default(),
                        |q| q.split('"').next().unwrap_or_default(),
                    );
                    Some(value.to_owned())
                };
                let (Some(status), Some(reason)) = (field("status"), field("reason")) else {
                    continue;
                };
                if status.parse::<u16>().is_ok_and(|s| s >= 400) {
                    *reasons.entry((status, reason)).or_insert(0) += 1;
                }
            }
        }
    }
    d.run.say("");
    d.run.say("Refusals in the gateways' decision logs (both replicas, every process), by status and reason:");
    d.run.say(format!(
        "{:<6} | {:<32} | {:>7}",
        "status", "reason", "count"
    ));
    d.run.say(format!("{:-<7}|{:-<34}|{:-<8}", "", "", ""));
    for ((status, reason), n) in &reasons {
        d.run.say(format!("{status:<6} | {reason:<32} | {n:>7}"));
    }

    // The unknown kids.
    if let Some(kids) = &g.kids {
        let answers = kids.answers.lock().map(|a| a.clone()).unwrap_or_default();
        let text: Vec<String> = answers
            .iter()
            .map(|((s, c), n)| format!("{s} {c}: {n}"))
            .collect();
        let total: u64 = answers.values().sum();
        let unexpected: u64 = answers
            .iter()
            .filter(|((s, c), _)| !(*s == 401 && c == "unknown_kid" || *s == 503))
            .map(|(_, n)| n)
            .sum();
        d.run.check(
            total == t.kid_count as u64 && unexpected == 0,
            format!("unknown kids: {total} sent, answered {}", text.join(", ")),
            format!(
                "unknown kids: {total} of {} answered, {unexpected} with an answer other than 401 unknown_kid or 503: {}",
                t.kid_count,
                text.join(", ")
            ),
        );
    }
    // The slow clients.
    if let Some(slow) = &g.slow {
        let per = slow.count / slow.results.len().max(1);
        for (replica, result) in &slow.results {
            match result {
                Ok(v) => {
                    let (open, answered) = (v["still_open"].as_u64(), v["answered_408"].as_u64());
                    d.run.check(
                        open == Some(0) && answered == Some(per as u64),
                        format!(
                            "slow clients on {replica}: all {per} answered 408 and closed ({v})"
                        ),
                        format!(
                            "slow clients on {replica}: {v} (wanted {per} answered 408, none open)"
                        ),
                    );
                }
                Err(e) => d.run.fail(format!("slow clients on {replica}: {e}")),
            }
        }
    }
    // Resident sets. With --short the warm-up (6 s) ends before the
    // allocator and the caches have settled: a looser bound.
    let bound = if d.run.short { 25.0 } else { 10.0 };
    for (name, warm, end) in &g.rss {
        match (warm, end) {
            (Some(w), Some(e)) => {
                let growth = (*e as f64 - *w as f64) / *w as f64 * 100.0;
                d.run.check(
                    growth <= bound,
                    format!("RSS of {name}: {w} KiB after the warm-up, {e} KiB at the end ({growth:+.1} %)"),
                    format!("RSS of {name}: {w} KiB after the warm-up, {e} KiB at the end ({growth:+.1} %, over {bound} %)"),
                );
            }
            _ => d
                .run
                .fail(format!("RSS of {name}: not read ({warm:?}, {end:?})")),
        }
    }
    let (applied, sent) = g.reloads;
    d.run.ok(format!(
        "reloads: {sent} POST /reload (every {}s on both replicas), {applied} applied or unchanged",
        t.reload_every
    ));
    if let Some(ms) = g.redis_gap_ms {
        d.run.ok(format!(
            "DPoP accepted 503 for {ms} ms around the Redis restart (until both replicas saw the store again)"
        ));
    }
    d.run.say(format!(
        "failed requests in total: {failed_total} (loads and mtls probe)"
    ));
    d.run.say("");
    crate::load::say_outputs(&d.run, &outs);
}
