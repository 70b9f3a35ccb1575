//! The constant load: `stella-load` as a child process, its request kinds
//! written as a spec file, commands (`step`, `expect`, `end`) on its stdin,
//! each waited for until acknowledged on its stdout (`LOAD_ACK`), and its
//! tables and verdict at the end.

use crate::harness::{write_atomic, Abort};
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;
use stella_test_support::Process;

/// One running load generator.
pub struct Load {
    pub name: String,
    process: Process,
    stdin: Option<ChildStdin>,
    acks: usize,
}

impl Load {
    /// Whether the generator has exited (it runs until told to end).
    pub fn process_exited(&mut self) -> bool {
        self.process.try_exit_code().is_some()
    }
}

/// A request kind of the spec.
pub fn kind(name: &str, method: &str, url: String, credential: &str, weight: u32) -> Value {
    json!({"name": name, "method": method, "url": url, "credential": credential, "weight": weight})
}

/// `kind` with expected statuses other than 2xx.
pub fn kind_expecting(
    name: &str,
    method: &str,
    url: String,
    credential: &str,
    expect: &str,
    weight: u32,
) -> Value {
    let mut k = kind(name, method, url, credential, weight);
    k["expect"] = json!(expect);
    k
}

/// `kind` with a body.
pub fn kind_with_body(
    name: &str,
    method: &str,
    url: String,
    credential: &str,
    body: &str,
    weight: u32,
) -> Value {
    let mut k = kind(name, method, url, credential, weight);
    k["body"] = json!(body);
    k
}

impl crate::Drill {
    /// The default mix: every trust mode, Bearer, DPoP and anonymous, and
    /// two kinds that must stay refused (401 without a token, 403 without
    /// the scope). Weights sum to 16.
    pub fn default_kinds(&self) -> Vec<Value> {
        let gw = self.stack.gw();
        let legacy = format!("token-file:{}", self.run.dir.join("legacy.token").display());
        vec![
            kind("public", "GET", format!("{gw}/public/hello"), "none", 2),
            kind(
                "items-bearer",
                "GET",
                format!("{gw}/items/1"),
                "bearer:svc-bearer",
                3,
            ),
            kind(
                "items-readonly",
                "GET",
                format!("{gw}/items/2"),
                "bearer:svc-readonly",
                1,
            ),
            kind(
                "dpop",
                "GET",
                format!("{gw}/dpop/1?x=1"),
                "dpop:svc-dpop",
                2,
            ),
            kind_with_body(
                "write-dpop",
                "POST",
                format!("{gw}/items/7"),
                "dpop:svc-dpop",
                r#"{"n":1}"#,
                1,
            ),
            kind(
                "hybrid-bearer",
                "GET",
                format!("{gw}/hybrid/1"),
                "bearer:svc-bearer",
                2,
            ),
            kind(
                "hybrid-dpop",
                "GET",
                format!("{gw}/hybrid/2"),
                "dpop:svc-dpop",
                1,
            ),
            kind("legacy", "GET", format!("{gw}/legacy/1"), &legacy, 2),
            kind_expecting(
                "anon-refused",
                "GET",
                format!("{gw}/items/3"),
                "none",
                "401",
                1,
            ),
            kind_expecting(
                "admin-refused",
                "GET",
                format!("{gw}/admin/x"),
                "bearer:svc-readonly",
                "403",
                1,
            ),
        ]
    }

    /// Starts the drill's load (`load`) with these kinds at the drill's
    /// rate and waits until it is sending.
    pub fn load_start(&mut self, kinds: Vec<Value>) -> Result<(), Abort> {
        let load = self.start_load("load", kinds, self.run.rate)?;
        self.run.say(format!(
            "  load: {} req/s, kinds in {}/load.yaml",
            self.run.rate,
            self.run.relative(&self.run.logs)
        ));
        self.load = Some(load);
        Ok(())
    }

    /// Starts a load generator named `name` (logs `<name>.out`, `.err`, spec
    /// `<name>.yaml`).
    pub fn start_load(&self, name: &str, kinds: Vec<Value>, rate: u32) -> Result<Load, Abort> {
        self.start_load_with(name, kinds, rate, &[])
    }

    /// `start_load` with more `stella-load` arguments (`--resource URL`:
    /// the tokens' audience; the opaque tokens' gives opaque tokens).
    pub fn start_load_with(
        &self,
        name: &str,
        kinds: Vec<Value>,
        rate: u32,
        args: &[&str],
    ) -> Result<Load, Abort> {
        let spec = self.run.logs.join(format!("{name}.yaml"));
        let text = serde_yaml::to_string(&json!({ "kinds": kinds }))
            .map_err(|e| Abort(format!("load spec: {e}")))?;
        write_atomic(&spec, &text)?;
        let mut cmd = Command::new(self.run.binary("stella-load"));
        cmd.arg("--rate")
            .arg(rate.to_string())
            .args([
                "--issuer",
                &self.stack.issuer,
                "--first-step",
                "warmup",
                "--timeout",
                "5",
                "--duration",
                "3600",
            ])
            .arg("--spec")
            .arg(&spec)
            .args(args);
        let mut process = Process::start_logged(
            name,
            cmd,
            "LOAD_READY",
            Duration::from_secs(60),
            &self.run.logs,
            Stdio::piped(),
        )
        .map_err(|e| Abort(format!("the load generator did not start: {e}")))?;
        let stdin = process.take_stdin();
        Ok(Load {
            name: name.to_owned(),
            process,
            stdin,
            acks: 0,
        })
    }

    /// Sends a command to the drill's load and waits for its
    /// acknowledgement (it is in effect for every request sent from then on).
    pub fn load_cmd(&mut self, line: &str) {
        if let Some(mut load) = self.load.take() {
            self.command(&mut load, line);
            self.load = Some(load);
        }
    }

    /// Sends a command to a load generator and waits up to 5 s for its
    /// acknowledgement; a missing one is a failure.
    pub fn command(&self, load: &mut Load, line: &str) {
        let sent = load
            .stdin
            .as_mut()
            .is_some_and(|s| writeln!(s, "{line}").and_then(|()| s.flush()).is_ok());
        load.acks += 1;
        let acked = sent
            && self
                .run
                .wait_for(Duration::from_secs(5), || {
                    acks(&load.process) >= load.acks || load.process.try_exit_code().is_some()
                })
                .is_some()
            && acks(&load.process) >= load.acks;
        if !acked {
            self.run.fail(format!(
                "the {} generator did not acknowledge: {line}",
                load.name
            ));
        }
    }

    /// Starts a step: its row in the tables.
    pub fn step(&mut self, name: &str) {
        self.run.say(format!("== step {name}"));
        self.load_cmd(&format!("step {name}"));
    }

    /// From now on `kind` must answer one of `statuses`.
    pub fn expect(&mut self, kind: &str, statuses: &str) {
        self.load_cmd(&format!("expect {kind} {statuses}"));
    }

    /// Keeps the load on for the step's length.
    pub fn hold(&mut self) -> Result<(), Abort> {
        self.hold_for(self.run.step)
    }

    pub fn hold_for(&mut self, time: Duration) -> Result<(), Abort> {
        std::thread::sleep(time);
        let exited = self
            .load
            .as_mut()
            .is_some_and(|l| l.process.try_exit_code().is_some());
        if exited {
            return self.run.abort("the load generator exited early");
        }
        Ok(())
    }

    /// Ends the drill's load, prints its tables, records its verdict.
    pub fn load_end(&mut self) {
        if let Some(load) = self.load.take() {
            self.end_load(load);
        }
    }

    /// Ends a load generator: `end`, then waits for its report. Prints the
    /// tables and fails the drill if it failed; its exit code and stdout.
    pub fn end_load(&self, load: Load) -> (Option<i32>, String) {
        let name = load.name.clone();
        let (code, out) = self.end_load_quietly(load);
        let report: Vec<&str> = out.lines().filter(|l| !l.starts_with("LOAD_")).collect();
        self.run.say("");
        self.run.say(report.join("\n"));
        if code != Some(0) {
            let err = read(&self.run.logs.join(format!("{name}.err")));
            let failures = err.lines().filter(|l| l.starts_with("FAIL ")).count();
            self.run.fail(format!(
                "{name} exit status {code:?} ({failures} failures logged; first ones below, all in {}/{name}.err)",
                self.run.relative(&self.run.logs),
            ));
            for line in err
                .lines()
                .filter(|l| l.starts_with("FAIL ") || l.starts_with("stella-load"))
                .take(10)
            {
                eprintln!("{line}");
            }
        }
        (code, out)
    }

    /// Ends a load generator and waits for its report, judging nothing: its
    /// exit code and stdout (the caller reads the tables).
    pub fn end_load_quietly(&self, mut load: Load) -> (Option<i32>, String) {
        if let Some(mut stdin) = load.stdin.take() {
            let _ = writeln!(stdin, "end");
        }
        let code = match load.process.wait_exit(Duration::from_secs(60)) {
            Ok(code) => code,
            Err(e) => {
                self.run.fail(e);
                load.process.stop("KILL", Duration::from_secs(5))
            }
        };
        let out = load
            .process
            .log_files()
            .map(|(out, _)| read(out))
            .unwrap_or_default();
        (code, out)
    }
}

fn acks(process: &Process) -> usize {
    process
        .log_files()
        .map(|(out, _)| {
            read(out)
                .lines()
                .filter(|l| l.starts_with("LOAD_ACK "))
                .count()
        })
        .unwrap_or(0)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The summary line of a finished load (`N requests, M failed`), from its
/// stderr.
pub fn summary(err: &str) -> Option<String> {
    err.lines().find_map(|l| {
        let rest = l.strip_prefix("stella-load: ")?;
        let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        match words.as_slice() {
            [requests, "requests", failed, "failed", ..] => {
                Some(format!("{requests} requests, {failed} failed"))
            }
            _ => None,
        }
    })
}

/// A row of a stella-load table: its cells, trimmed.
pub fn cells(line: &str) -> Vec<&str> {
    line.split('|').map(str::trim).collect()
}

/// (requests, failed, non-2xx) of a step in a load's step table.
pub fn step_counts(out: &str, step: &str) -> (u64, u64, u64) {
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
pub fn kind_rows(out: &str) -> Vec<(u64, String)> {
    out.lines()
        .map(cells)
        .filter(|c| c.len() == 4 && c[1].parse::<u64>().is_ok())
        .map(|c| (c[2].parse().unwrap_or(0), c[3].to_owned()))
        .collect()
}

/// The p99 latency (ms) of a step in a load's step table.
pub fn step_p99(out: &str, step: &str) -> Option<f64> {
    out.lines()
        .map(cells)
        .find(|c| c.len() >= 6 && c[0] == step)
        .and_then(|c| c[5].parse().ok())
}

/// Each load class's report as a drill prints it at the end: the exit code,
/// then stella-load's table without its machine-read `LOAD_` lines.
pub fn say_outputs(run: &crate::harness::Run, outs: &[(&'static str, Option<i32>, String)]) {
    for (class, code, out) in outs {
        run.say(format!("-- load class {class} (stella-load exit {code:?})"));
        run.say(
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

    #[test]
    fn the_summary_is_the_requests_and_failed_line_only() {
        let err = "stella-load: token refresh failed (retrying in 1 s): x\n\
                   FAIL kind=dpop status=503\n\
                   stella-load: 1200 requests, 3 failed (0.25 %)\n";
        assert_eq!(summary(err).as_deref(), Some("1200 requests, 3 failed"));
        assert_eq!(summary("stella-load: stopped by a signal\n"), None);
    }

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
        assert_eq!(step_counts(REPORT, "3-gateway-restart-window"), (14, 6, 9));
        assert_eq!(step_p99(REPORT, "baseline"), Some(16.6));
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
