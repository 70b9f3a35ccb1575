//! The `stella-gateway` binary: parses the command line and hands over to
//! `stella_gateway::cli`.

// mimalloc: measured fewer cycles in malloc/free on the proxy hot path than
// the system allocator (bench/run.sh). Built with `no_thp`, and see
// `memory::start`: how the memory of closed connections goes back to the
// system (docs/sizing.md, "Memory").
#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

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

/// mimalloc as the global allocator, through its plain entry points
/// whenever they give the alignment asked for.
///
/// The `mimalloc` crate sends every allocation through
/// `mi_malloc_aligned`, even for the 8-byte alignment nearly every Rust
/// allocation asks for. mimalloc takes its fast path there only when the
/// size class's page has a free block at hand; otherwise it falls back to
/// an over-allocation one size class up. On a forwarded request about 11
/// of 100 allocations went that way, and the allocator cost 10.4k
/// instructions a request under callgrind; through `mi_malloc` it costs
/// less (docs/dependencies.md, "mimalloc"). Every mimalloc block is a
/// multiple of 8 bytes from an aligned page start (this build has no
/// padding: neither the `secure` nor a debug build of mimalloc), so
/// `mi_malloc` always gives 8-byte alignment; larger alignments still go
/// through the aligned entry points.
mod allocator {
    use libmimalloc_sys as mi;
    use std::alloc::{GlobalAlloc, Layout};
    use std::ffi::c_void;

    /// The largest alignment `mi_malloc` and `mi_realloc` always give.
    const PLAIN_ALIGN: usize = 8;

    pub struct Mimalloc;

    // SAFETY: each function returns memory from mimalloc aligned to at
    // least `layout.align()` (above), or null on failure; memory is freed
    // and resized only through mimalloc, which accepts a pointer from any
    // of its allocation functions in `mi_free` and `mi_realloc*`.
    unsafe impl GlobalAlloc for Mimalloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: plain C allocation calls; no pointer is read.
            unsafe {
                if layout.align() <= PLAIN_ALIGN {
                    mi::mi_malloc(layout.size()) as *mut u8
                } else {
                    mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
                }
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            unsafe {
                if layout.align() <= PLAIN_ALIGN {
                    mi::mi_zalloc(layout.size()) as *mut u8
                } else {
                    mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
                }
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: the caller passes a pointer this allocator returned.
            unsafe { mi::mi_free(ptr as *mut c_void) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller passes a pointer this allocator returned
            // with `layout`; the new block keeps its alignment.
            unsafe {
                if layout.align() <= PLAIN_ALIGN {
                    mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
                } else {
                    mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every size up to a few pages and every alignment up to 4 KiB:
        /// aligned, writable, and kept whole through growth and shrinking.
        #[test]
        fn every_block_has_its_alignment_and_keeps_its_bytes_when_resized() {
            let allocator = Mimalloc;
            let mut live = Vec::new();
            for size in (1..=3000).chain([4096, 8191, 65_536, 1 << 20]) {
                for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: a non-zero size; the block is written within
                    // its size, resized and freed with its own layout.
                    unsafe {
                        let zeroed = size % 3 == 0;
                        let p = if zeroed {
                            allocator.alloc_zeroed(layout)
                        } else {
                            allocator.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        std::ptr::write_bytes(p, (size % 251) as u8, size);
                        let grown = allocator.realloc(p, layout, size * 2 + 8);
                        assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                        let kept = std::slice::from_raw_parts(grown, size);
                        assert!(kept.iter().all(|&b| b == (size % 251) as u8));
                        let grown_layout = Layout::from_size_align(size * 2 + 8, align).unwrap();
                        let small = allocator.realloc(grown, grown_layout, size.div_ceil(2));
                        assert_eq!(small as usize % align, 0, "shrunk {size} align {align}");
                        let kept = std::slice::from_raw_parts(small, size.div_ceil(2));
                        assert!(kept.iter().all(|&b| b == (size % 251) as u8));
                        let small_layout =
                            Layout::from_size_align(size.div_ceil(2), align).unwrap();
                        // Some stay allocated, so that later blocks come
                        // from partly used pages.
                        if size % 7 == 0 {
                            live.push((small, small_layout));
                        } else {
                            allocator.dealloc(small, small_layout);
                        }
                    }
                }
            }
            for (p, layout) in live {
                // SAFETY: allocated above with this layout.
                unsafe { allocator.dealloc(p, layout) };
            }
        }
    }
}
