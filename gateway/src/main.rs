//! The `stella-gateway` binary: parses the command line and hands over to
//! `stella_gateway::cli`.

// mimalloc: measured fewer cycles in malloc/free on the proxy hot path than
// the system allocator (bench/run.sh). Built with `no_thp`, and see
// `memory::start`: how the memory of closed connections goes back to the
// system (docs/sizing.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    memory::start();
    let code = stella_gateway::cli::main();
    stella_gateway::otel::shutdown();
    stella_gateway::telemetry::flush_logs();
    std::process::exit(code);
}

/// The allocator's settings that keep the resident memory near what is in
/// use (docs/sizing.md, "Memory"; `bench/run.sh connections` measures it).
mod memory {
    use std::time::Duration;

    /// How often freed memory is handed back: mimalloc returns a free page
    /// to the system once it has been free for its purge delay (1 s), but
    /// only when some thread of the process allocates; an idle gateway
    /// would keep the memory of its last burst of connections.
    const PURGE_EVERY: Duration = Duration::from_secs(1);

    /// Turns transparent huge pages off for the process and starts the
    /// thread that purges freed memory while the workers are idle.
    ///
    /// With huge pages, memory is made resident 2 MiB at a time, not 4 KiB:
    /// an idle connection, whose buffers are mostly untouched, cost 106 KiB
    /// of RSS against 45 KiB without them (`bench/run.sh connections`), and
    /// a freed range inside a huge page is not handed back as a whole.
    /// The `no_thp` build of mimalloc does not ask for huge pages; the
    /// `prctl` turns them off also where the host gives them to every
    /// mapping (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`).
    /// It is what mimalloc itself does for `MIMALLOC_ALLOW_THP=0`, an
    /// option it reads before `main` runs.
    pub fn start() {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments
        // only and changes a flag of this process; an error (an old kernel)
        // leaves huge pages as they were, which is only more memory.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
        let _ = std::thread::Builder::new()
            .name("memory-purge".into())
            .spawn(|| {
                // SAFETY: no arguments. Gives this thread its own mimalloc
                // heap: `mi_collect` on a thread without one does nothing.
                unsafe { libmimalloc_sys::mi_thread_init() };
                loop {
                    std::thread::sleep(PURGE_EVERY);
                    // SAFETY: no arguments; collects this (idle) thread's
                    // heap and purges the pages of every thread that have
                    // been free for the purge delay.
                    unsafe { libmimalloc_sys::mi_collect(false) };
                }
            });
    }
}
