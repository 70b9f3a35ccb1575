//! The `stella-load` binary; see `stella_load::cli`.

fn main() {
    std::process::exit(stella_load::cli::main());
}
