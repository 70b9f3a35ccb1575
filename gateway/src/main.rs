//! The `stella-gateway` binary: parses the command line and hands over to
//! `stella_gateway::cli`.

fn main() {
    std::process::exit(stella_gateway::cli::main());
}
