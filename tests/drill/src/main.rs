//! `stella-drill`: the operations drills. Each drill starts its own private
//! copy of the local stack (Authority, sample services, gateway) on free
//! loopback ports, with its own copies of the gateway configuration, the
//! policies and the services' `Router__` files under
//! `tests/.run/drills/<name>/`, puts it under constant load with
//! `stella-load`, runs an operation (a key rotation, a trust flip, a reload,
//! a restart, an outage) and counts every failed request; any failure fails
//! the drill. `scripts/drills/*.sh` are one-line wrappers around this.
//! `stella-drill bench ...` runs the benchmarks (`bench/*.sh` wrap it).
//!
//! - `harness`: the run folder, options, verdict, polling;
//! - `stack`: the processes and the configuration files they read;
//! - `load`: the load generator and its commands;
//! - `drills`: one module per drill;
//! - `bench`: one module per benchmark.

mod bench;
mod drills;
mod harness;
mod load;
mod stack;

use clap::{Parser, Subcommand};
use harness::{Abort, Options, Outcome, Run};
use load::Load;
use stack::Stack;
use std::time::Instant;

/// A running drill: its files and verdict, its stack, its load.
pub struct Drill {
    pub run: Run,
    pub stack: Stack,
    pub load: Option<Load>,
}

impl Drill {
    /// Creates the run folder; `full` and `short` are the step lengths in
    /// seconds.
    pub fn new(name: &str, options: &Options, full: u64, short: u64) -> Result<Drill, Abort> {
        Ok(Drill {
            run: Run::new(name, options, full, short)?,
            stack: Stack::new(),
            load: None,
        })
    }

    /// Ends the load (printing its tables), stops every process, prints the
    /// verdict; whether the drill passed.
    fn finish(mut self, outcome: Outcome) -> bool {
        if let Err(Abort(why)) = &outcome {
            self.run.fail(why);
        }
        self.load_end();
        self.stop_all();
        let seconds = self.run.elapsed().as_secs();
        let passed = self.run.failures() == 0;
        if passed {
            println!("DRILL {}: PASSED ({seconds}s)", self.run.name);
        } else {
            println!(
                "DRILL {}: FAILED ({seconds}s; logs in {})",
                self.run.name,
                self.run.relative(&self.run.dir)
            );
        }
        passed
    }
}

#[derive(Parser)]
#[command(
    name = "stella-drill",
    about = "The operations drills: an operation under constant load, every failed request counted",
    after_help = "Drills: key-rotation, trust-flip, routes-policies, replica-restart, slow-clients, \
authority-outage, binary-upgrade, revocation, game-day, replay-capacity, schemathesis; `all` runs the first nine.\n\
Binaries (stella-gateway, stella-load, stella-echo-service) are taken from this program's folder.\n\
Files and logs: tests/.run/drills/<name>/",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// CI length: a few seconds per step.
    #[arg(long)]
    short: bool,
    /// Requests per second from the load generator (authority-outage: a
    /// third of it unless given, under `all`).
    #[arg(long)]
    rate: Option<u32>,
    /// Seconds of load per step.
    #[arg(long)]
    step_seconds: Option<u64>,
    /// revocation: revoke/measure cycles per identity (each but the last
    /// removes the entry again), for p50/p99/max over the runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// The drills to run.
    #[arg(required = true)]
    drills: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The benchmarks (bench/run.sh, bench/callgrind.sh): release
    /// binaries from this program's folder, files in a scratch folder
    /// removed at the end.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// The drills `all` runs, in order (replay-capacity and schemathesis are
/// run on their own).
const ALL: &[&str] = &[
    "key-rotation",
    "trust-flip",
    "routes-policies",
    "replica-restart",
    "slow-clients",
    "authority-outage",
    "binary-upgrade",
    "revocation",
    "game-day",
];

fn main() {
    let args = Args::parse();
    if let Some(Command::Bench { command }) = args.command {
        bench::main(command);
    }
    let names: Vec<String> = if args.drills == ["all"] {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.drills.clone()
    };
    if let Some(bad) = names.iter().find(|n| drills::find(n).is_none()) {
        eprintln!("stella-drill: unknown drill {bad} (see --help)");
        std::process::exit(2);
    }
    let several = names.len() > 1;
    let mut results = Vec::new();
    for name in &names {
        if several {
            println!("\n######## {name}");
        }
        // The outage drill runs six load generators and two probes beside a
        // stopped and restarted Authority and a replaced gateway: on a 2-core machine it
        // gets a third of the default rate unless --rate is given.
        // The game day runs two gateways, four load generators, a probe and
        // the faults' own clients: the same third.
        let default_rate = if matches!(name.as_str(), "authority-outage" | "game-day") {
            100
        } else {
            300
        };
        let options = Options {
            short: args.short,
            rate: args.rate.unwrap_or(default_rate),
            step_seconds: args.step_seconds,
            runs: args.runs,
        };
        let started = Instant::now();
        let passed = run_one(name, &options);
        results.push((name.clone(), passed, started.elapsed().as_secs()));
    }
    if several {
        println!("\n{:<16} | {:<6} | seconds", "drill", "result");
        println!("-----------------|--------|--------");
        for (name, passed, secs) in &results {
            let result = if *passed { "passed" } else { "FAILED" };
            println!("{name:<16} | {result:<6} | {secs:>7}");
        }
    }
    std::process::exit(if results.iter().all(|r| r.1) { 0 } else { 1 });
}

/// Runs one drill; a panic in it fails that drill, after its processes are
/// stopped.
fn run_one(name: &str, options: &Options) -> bool {
    let (body, full, short) = drills::find(name).expect("checked in main");
    let mut drill = match Drill::new(name, options, full, short) {
        Ok(d) => d,
        Err(Abort(why)) => {
            eprintln!("  FAILED: {why}");
            println!("DRILL {name}: FAILED");
            return false;
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut drill)))
        .unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Abort(format!("the drill panicked: {text}")))
        });
    drill.finish(outcome)
}
