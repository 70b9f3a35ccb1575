//! The `stella-gateway` binary: parses the command line and hands over to
//! `stella_gateway::cli`.

// mimalloc: measured fewer cycles in malloc/free on the proxy hot path than
// the system allocator (bench/run.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = stella_gateway::cli::main();
    stella_gateway::otel::shutdown();
    stella_gateway::telemetry::flush_logs();
    std::process::exit(code);
}
