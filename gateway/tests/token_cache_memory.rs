//! DESIGN.md 5 budgets 128 MiB of resident memory with 100k cached tokens.
//! This counts the heap bytes the verified-token cache holds for 100k tokens
//! shaped like the Authority's (a counting allocator, so the figure is exact
//! and repeatable, unlike RSS). The gateway's own resident size after load
//! is about 31 MiB (bench/run.sh), so the cache may use at most 90 MiB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use stella_gateway::authn::{TokenCache, TokenKey};
use stella_gateway::identity::TokenClaims;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_hundred_thousand_cached_tokens_fit_in_the_memory_budget() {
    const TOKENS: u64 = 100_000;
    let cache = TokenCache::new(TOKENS + 1);
    let now = 1_800_000_000;
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..TOKENS {
        // Shaped like a client_credentials token from the test Authority:
        // 43-character jti, client id as subject, three scopes, a tenant.
        let claims = TokenClaims::for_tests(
            &format!("svc-client-{i:08}"),
            &["echo.read", "echo.write", "admin"],
        )
        .with_tenant("acme")
        .with_audiences(&["http://gateway.local/api"]);
        let token = format!("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{i:064}.sig");
        cache.insert(TokenKey::of(&token), Arc::new(claims), now + 3600, now);
    }
    assert_eq!(cache.entry_count(), TOKENS);
    let used = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let per_token = used / TOKENS as f64;
    println!(
        "token cache: {:.1} MiB for {TOKENS} tokens, {per_token:.0} bytes each",
        used / 1048576.0
    );
    assert!(used < 90.0 * 1048576.0, "{per_token:.0} bytes per token");
}
