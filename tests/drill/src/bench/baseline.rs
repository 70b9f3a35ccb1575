//! The instruction-count baseline (`bench/baseline.json`) and the check
//! against it (`bench/callgrind.sh --check`): a route whose Ir/request grew
//! more than the tolerance over the baseline fails, with the functions
//! that grew the most. Writing the file (`--write-baseline`) is a deliberate
//! step: the commit that changes it says why (docs/performance.md).

use super::callgrind::{functions, Counted};
use super::commas;
use crate::harness::Abort;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// How much a route may grow over the baseline before the check fails.
pub const TOLERANCE: f64 = 0.03;
/// Functions kept per route in the file, by self cost.
const KEPT: usize = 40;
/// Functions listed per route that grew.
const LISTED: usize = 10;

/// One route of a baseline: Ir/request and its top functions by self cost
/// (Ir/request each).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub ir_per_request: f64,
    pub functions: BTreeMap<String, f64>,
}

/// Ir/request and the top self-cost functions of each counted route.
pub fn routes_of(counted: &[Counted], requests: u64) -> BTreeMap<String, Route> {
    let n = requests as f64;
    counted
        .iter()
        .map(|c| {
            let functions = functions(&c.annotate, c.total, false)
                .into_iter()
                .take(KEPT)
                .map(|(ir, _, name)| (name, ir as f64 / n))
                .collect();
            (
                c.route.clone(),
                Route {
                    ir_per_request: c.total as f64 / n,
                    functions,
                },
            )
        })
        .collect()
}

/// The file's text for `routes`, measured at `commit`.
pub fn to_json(routes: &BTreeMap<String, Route>, commit: &str, requests: u64) -> String {
    let mut map = Map::new();
    for (name, route) in routes {
        let functions: Map<String, Value> = route
            .functions
            .iter()
            .map(|(f, ir)| (f.clone(), json!(ir.round() as u64)))
            .collect();
        map.insert(
            name.clone(),
            json!({
                "ir_per_request": route.ir_per_request.round() as u64,
                "functions": functions,
            }),
        );
    }
    let doc = json!({
        "about": "Instructions per request under callgrind (bench/callgrind.sh), release build, \
                  gateway.threads 1. `bench/callgrind.sh --check` fails when a route grows more \
                  than the tolerance over these. Update with --write-baseline, in a commit that \
                  says why (docs/performance.md).",
        "commit": commit,
        "requests": requests,
        "tolerance": TOLERANCE,
        "routes": Value::Object(map),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// The routes and the commit of a baseline file's text.
pub fn parse(text: &str) -> Result<(BTreeMap<String, Route>, String), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let commit = doc["commit"].as_str().unwrap_or("unknown").to_owned();
    let Some(routes) = doc["routes"].as_object() else {
        return Err("no `routes` object".into());
    };
    let mut out = BTreeMap::new();
    for (name, route) in routes {
        let ir = route["ir_per_request"]
            .as_f64()
            .ok_or_else(|| format!("routes.{name}.ir_per_request is not a number"))?;
        let functions = route["functions"]
            .as_object()
            .map(|f| {
                f.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            name.clone(),
            Route {
                ir_per_request: ir,
                functions,
            },
        );
    }
    Ok((out, commit))
}

/// The comparison of `now` with `baseline`, and whether every route is
/// within the tolerance. A route missing from the baseline is reported, not
/// failed.
pub fn compare(
    baseline: &BTreeMap<String, Route>,
    commit: &str,
    now: &BTreeMap<String, Route>,
) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let _ = writeln!(
        out,
        "\nAgainst the baseline (commit {commit}; fails above +{:.0} %)",
        TOLERANCE * 100.0
    );
    let _ = writeln!(
        out,
        "{:<8}{:>12}{:>12}{:>9}  verdict",
        "route", "baseline", "now", "change"
    );
    for (name, route) in now {
        let Some(base) = baseline.get(name) else {
            let _ = writeln!(
                out,
                "{name:<8}{:>12}{:>12}{:>9}  not in the baseline",
                "-",
                commas(route.ir_per_request),
                "-"
            );
            continue;
        };
        let change = route.ir_per_request / base.ir_per_request.max(1.0) - 1.0;
        let grew = change > TOLERANCE;
        ok &= !grew;
        let _ = writeln!(
            out,
            "{name:<8}{:>12}{:>12}{:>+8.1}%  {}",
            commas(base.ir_per_request),
            commas(route.ir_per_request),
            change * 100.0,
            if grew { "FAIL" } else { "ok" }
        );
    }
    for (name, route) in now {
        let Some(base) = baseline.get(name) else {
            continue;
        };
        if route.ir_per_request / base.ir_per_request.max(1.0) - 1.0 <= TOLERANCE {
            continue;
        }
        let mut growth: Vec<(f64, &str, f64, f64)> = route
            .functions
            .iter()
            .map(|(f, ir)| {
                let before = base.functions.get(f).copied().unwrap_or(0.0);
                (ir - before, f.as_str(), before, *ir)
            })
            .filter(|(d, ..)| *d > 0.0)
            .collect();
        growth.sort_by(|a, b| b.0.total_cmp(&a.0));
        let _ = writeln!(
            out,
            "\n{name}: the functions that grew the most (self cost, Ir/request)"
        );
        let _ = writeln!(
            out,
            "{:>10}{:>10}{:>10}  function",
            "before", "now", "growth"
        );
        for (d, f, before, after) in growth.into_iter().take(LISTED) {
            let f: String = f.chars().take(140).collect();
            let _ = writeln!(
                out,
                "{:>10}{:>10}{:>10}  {f}",
                commas(before),
                commas(after),
                format!("+{}", commas(d))
            );
        }
    }
    (out, ok)
}

/// Reads the baseline at `path`.
pub fn read(path: &Path) -> Result<(BTreeMap<String, Route>, String), Abort> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Abort(format!("--check {}: {e}", path.display())))?;
    parse(&text).map_err(|e| Abort(format!("--check {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(ir: f64, functions: &[(&str, f64)]) -> Route {
        Route {
            ir_per_request: ir,
            functions: functions.iter().map(|(f, v)| (f.to_string(), *v)).collect(),
        }
    }

    fn routes(list: &[(&str, Route)]) -> BTreeMap<String, Route> {
        list.iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect()
    }

    #[test]
    fn a_route_within_the_tolerance_passes_and_one_above_fails_with_what_grew() {
        let base = routes(&[
            (
                "pass",
                route(100_000.0, &[("memcpy", 20_000.0), ("hmac", 19_000.0)]),
            ),
            ("bearer", route(110_000.0, &[("blake3", 5_000.0)])),
        ]);
        let now = routes(&[
            // +2.9 %: within.
            (
                "pass",
                route(102_900.0, &[("memcpy", 22_900.0), ("hmac", 19_000.0)]),
            ),
            // +5 %: a new function and a grown one.
            (
                "bearer",
                route(115_500.0, &[("blake3", 6_000.0), ("new_thing", 4_500.0)]),
            ),
        ]);
        let (text, ok) = compare(&base, "abc123", &now);
        assert!(!ok, "{text}");
        assert!(text.contains("commit abc123"), "{text}");
        let line = |route: &str| {
            text.lines()
                .find(|l| l.starts_with(route))
                .unwrap()
                .to_owned()
        };
        assert!(line("pass").ends_with("ok"), "{text}");
        assert!(line("bearer").ends_with("FAIL"), "{text}");
        let grew = text.split("bearer: the functions").nth(1).unwrap();
        let new_at = grew.find("new_thing").unwrap();
        let blake_at = grew.find("blake3").unwrap();
        assert!(new_at < blake_at, "largest growth first: {grew}");
        assert!(!text.contains("pass: the functions"), "{text}");
    }

    #[test]
    fn everything_within_the_tolerance_passes_and_a_new_route_is_only_reported() {
        let base = routes(&[("pass", route(100_000.0, &[]))]);
        let now = routes(&[
            ("pass", route(97_000.0, &[])),
            ("dpop", route(1_000_000.0, &[])),
        ]);
        let (text, ok) = compare(&base, "c", &now);
        assert!(ok, "{text}");
        assert!(text.contains("not in the baseline"), "{text}");
    }

    #[test]
    fn the_file_round_trips() {
        let now = routes(&[(
            "pass",
            route(150_123.4, &[("a::b", 1_234.0), ("c'2", 10.0)]),
        )]);
        let text = to_json(&now, "deadbeef", 2000);
        let (back, commit) = parse(&text).unwrap();
        assert_eq!(commit, "deadbeef");
        assert_eq!(back["pass"].ir_per_request, 150_123.0);
        assert_eq!(back["pass"].functions["a::b"], 1_234.0);
        assert!(parse("{}").is_err());
        assert!(parse("{\"routes\":{\"pass\":{}}}").is_err());
    }
}
