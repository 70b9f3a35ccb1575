//! Verified access tokens by hash, so a token seen again skips signature
//! verification and claims parsing.
//!
//! - The key is BLAKE3 of the token bytes: the cache never keeps the raw
//!   token (a bearer credential), and equal hashes mean equal tokens (BLAKE3
//!   is a cryptographic hash: 128-bit collision resistance, like SHA-256).
//!   It is looked up on every request, so its cost counts: under callgrind
//!   about a quarter of SHA-256's instructions for a 900-byte token
//!   (docs/dependencies.md). A DPoP proof's `ath` is SHA-256 by RFC 9449
//!   and is computed where it is checked. A connection remembers the key
//!   of its last token ([`KeyMemo`]), so a client that sends one token
//!   request after request on a keep-alive connection has it hashed once.
//! - An entry serves until the token's `exp` plus leeway, never longer, and
//!   at most `token_cache_max_entries` entries are kept (`quick_cache`
//!   evicts the least useful, CLOCK-Pro). A hit found past its `exp` +
//!   leeway is a miss and is removed: `now` is the caller's, as everywhere
//!   in the pure core. Expired entries nobody asks for again are removed by
//!   [`TokenCache::remove_expired`] (the upkeep task calls it) or evicted
//!   when the cache is full.
//! - Memory: about 80 bytes of cache bookkeeping per entry besides the
//!   claims (moka, used before, took about 350: its per-entry timers,
//!   deques and frequency sketch); see `docs/performance.md`.
//! - A hit skips only what the token alone proves (signature, issuer, audience,
//!   times, claim types). The route policy, the `cnf` binding and any DPoP
//!   proof are checked by the caller on every request (docs/design.md §3.7).
//! - Entries are valid for the rules they were verified under: build a new
//!   cache when the Authority configuration changes.
//! - Tokens verified with a key the Authority later withdraws stay cached
//!   until they expire; access tokens are short-lived, and re-checking the
//!   key on every hit would cost the lookup the cache exists to skip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stella_core::identity::TokenClaims;

/// BLAKE3 of a token's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn of(token: &str) -> TokenKey {
        TokenKey::of_bytes(token.as_bytes())
    }

    /// The key of a token's bytes as presented (the same as [`TokenKey::of`]
    /// of its text).
    pub fn of_bytes(token: &[u8]) -> TokenKey {
        TokenKey(*blake3::hash(token).as_bytes())
    }

    /// The hash itself.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash of a credential is not itself secret, but it is a stable
        // handle on one; keep it out of logs.
        f.write_str("TokenKey(..)")
    }
}

/// The key of the last token one connection presented.
///
/// A client on a keep-alive connection sends the same token request after
/// request; the key of bytes equal to the last ones is the key computed for
/// them, so BLAKE3 runs once per token per connection instead of once per
/// request (3,700 of a Bearer request's 145,000 instructions under
/// callgrind; docs/performance.md). Nothing else is skipped: the cache
/// lookup, the expiry, the binding and the policy run on every request.
///
/// - Equal means byte for byte, the whole token, compared without an early
///   exit: the time taken does not say how much of a token matched the last
///   one (connections behind a load balancer carry several clients' tokens).
/// - The token's bytes are kept while the connection is open, like the
///   request buffers that held them; they are zeroed when replaced and when
///   the connection ends. Tokens longer than [`KeyMemo::MAX_TOKEN_BYTES`] are
///   not kept (their key is computed every time), which bounds what an idle
///   connection holds.
/// - Used by one connection's requests, one at a time; a lock that is busy
///   (never, in practice) means the key is computed.
#[derive(Default)]
pub struct KeyMemo {
    last: std::sync::Mutex<Option<(zeroize::Zeroizing<Vec<u8>>, TokenKey)>>,
}

impl KeyMemo {
    /// The longest token whose bytes are kept.
    pub const MAX_TOKEN_BYTES: usize = 4096;

    /// [`TokenKey::of_bytes`] of `token`, from the last token when equal.
    pub fn key_of(&self, token: &[u8]) -> TokenKey {
        let Ok(mut last) = self.last.try_lock() else {
            return TokenKey::of_bytes(token);
        };
        if let Some((bytes, key)) = last.as_ref() {
            if same_bytes(bytes, token) {
                return *key;
            }
        }
        let key = TokenKey::of_bytes(token);
        if token.len() <= Self::MAX_TOKEN_BYTES {
            let (bytes, memo) =
                last.get_or_insert_with(|| (zeroize::Zeroizing::new(Vec::new()), key));
            if token.len() > bytes.capacity() {
                // A new buffer (in steps of 256 bytes, so tokens a few
                // bytes apart share one); the old one is zeroed as it is
                // dropped, never left to a reallocation.
                *bytes =
                    zeroize::Zeroizing::new(Vec::with_capacity(token.len().next_multiple_of(256)));
            } else if token.len() < bytes.len() {
                // The old token's bytes past the new one's length.
                zeroize::Zeroize::zeroize(&mut bytes[token.len()..]);
            }
            // The new token over the old one.
            bytes.clear();
            bytes.extend_from_slice(token);
            *memo = key;
        } else {
            *last = None;
        }
        key
    }
}

impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMemo(..)")
    }
}

/// `a == b` without an early exit: every byte of the shorter-or-equal
/// inputs is read whatever the first difference (a length difference
/// answers at once; a token's length is not its secret).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let words = a_words.iter().zip(b_words).fold(0u64, |diff, (x, y)| {
        diff | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    let rest = a_rest
        .iter()
        .zip(b_rest)
        .fold(0u8, |diff, (x, y)| diff | (x ^ y));
    std::hint::black_box(words | u64::from(rest)) == 0
}

/// Distinct names [`TokenCache::compact`] shares, and the longest.
const MAX_INTERNED: usize = 4096;
const MAX_INTERNED_LEN: usize = 256;

#[derive(Clone)]
struct Entry {
    claims: Arc<TokenClaims>,
    /// Unix seconds; the entry is good while `now < valid_until`.
    valid_until: u64,
}

/// The verified-token cache, with hit and miss counters.
pub struct TokenCache {
    /// `None` when configured with zero entries: caching is off.
    inner: Option<quick_cache::sync::Cache<TokenKey, Entry>>,
    /// Audiences, scopes and roles seen in cached tokens, shared between
    /// them; at most [`MAX_INTERNED`] names.
    names: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("enabled", &self.inner.is_some())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens; 0 turns caching off.
    pub fn new(max_entries: u64) -> TokenCache {
        let inner = (max_entries > 0).then(|| {
            quick_cache::sync::Cache::new(usize::try_from(max_entries).unwrap_or(usize::MAX))
        });
        TokenCache {
            inner,
            names: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The claims of a token verified earlier, if still valid at `now`.
    pub fn get(&self, key: &TokenKey, now: u64) -> Option<Arc<TokenClaims>> {
        let found = self.inner.as_ref().and_then(|cache| {
            let entry = cache.get(key)?;
            if now < entry.valid_until {
                Some(entry.claims.clone())
            } else {
                cache.remove(key);
                None
            }
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers verified `claims` until `valid_until` (unix seconds,
    /// normally `exp` + leeway). Nothing is stored if that is not after
    /// `now`.
    pub fn insert(&self, key: TokenKey, claims: Arc<TokenClaims>, valid_until: u64, now: u64) {
        let Some(cache) = &self.inner else { return };
        if valid_until <= now {
            return;
        }
        cache.insert(
            key,
            Entry {
                claims,
                valid_until,
            },
        );
    }

    /// `claims` with their audiences, scopes and roles shared with the
    /// equal names of tokens cached before (100,000 tokens of one client
    /// otherwise hold 100,000 copies of its audience and scopes). Names past
    /// [`MAX_INTERNED`] distinct ones stay the token's own.
    pub fn compact(&self, mut claims: TokenClaims) -> TokenClaims {
        if self.inner.is_none() {
            return claims;
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for list in [&mut claims.audiences, &mut claims.scopes, &mut claims.roles] {
            for name in list.iter_mut() {
                if let Some(shared) = names.get(name) {
                    *name = shared.clone();
                } else if names.len() < MAX_INTERNED && name.len() <= MAX_INTERNED_LEN {
                    names.insert(name.clone());
                }
            }
        }
        claims
    }

    /// Removes the entries no longer valid at `now`; returns how many.
    pub fn remove_expired(&self, now: u64) -> u64 {
        let Some(cache) = &self.inner else { return 0 };
        let before = cache.len();
        cache.retain(|_, entry| now < entry.valid_until);
        before.saturating_sub(cache.len()) as u64
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups not answered from the cache.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Entries held.
    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map_or(0, |cache| cache.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(subject: &str) -> Arc<TokenClaims> {
        Arc::new(TokenClaims::for_tests(subject, &["read"]))
    }

    #[test]
    fn key_is_the_blake3_of_the_token_bytes() {
        let key = TokenKey::of("abc");
        // BLAKE3's published hash of "abc".
        let expected = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_ne!(TokenKey::of("abc"), TokenKey::of("abd"));
        assert_eq!(format!("{key:?}"), "TokenKey(..)");
    }

    #[test]
    fn the_memo_gives_each_token_its_own_key() {
        let memo = KeyMemo::default();
        let token = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl".to_vec();
        let check = |bytes: &[u8]| assert_eq!(memo.key_of(bytes), TokenKey::of_bytes(bytes));
        check(&token);
        check(&token);
        // The same length, one byte different, at every position: each
        // its own key, and the genuine token's again after it.
        for at in 0..token.len() {
            let mut other = token.clone();
            other[at] ^= 0x01;
            check(&other);
            check(&token);
        }
        check(&token[..token.len() - 1]);
        check(b"");
        check(&token);
        let long = vec![b'a'; KeyMemo::MAX_TOKEN_BYTES + 1];
        check(&long);
        check(&long);
        check(&token);
    }

    #[test]
    fn the_memo_keeps_one_token_and_never_a_long_one() {
        let memo = KeyMemo::default();
        let kept = |memo: &KeyMemo| {
            let last = memo.last.lock().unwrap();
            last.as_ref().map(|(bytes, key)| (bytes.to_vec(), *key))
        };
        memo.key_of(b"first");
        memo.key_of(b"second");
        assert_eq!(
            kept(&memo),
            Some((b"second".to_vec(), TokenKey::of("second")))
        );
        let longest = vec![b'b'; KeyMemo::MAX_TOKEN_BYTES];
        memo.key_of(&longest);
        assert_eq!(kept(&memo).map(|(bytes, _)| bytes), Some(longest));
        memo.key_of(&[b'c'; KeyMemo::MAX_TOKEN_BYTES + 1]);
        assert_eq!(
            kept(&memo),
            None,
            "a longer token is not kept, nor the one before"
        );
        // A shorter token leaves nothing of the longer one before it.
        memo.key_of(b"a longer token than the next");
        memo.key_of(b"short");
        let last = memo.last.lock().unwrap();
        let (bytes, _) = last.as_ref().unwrap();
        assert_eq!(&bytes[..], b"short");
        assert!(bytes.capacity() >= 28);
        // SAFETY: within the allocation, and every one of these bytes was
        // written (the longer token, then zeros).
        let tail = unsafe { std::slice::from_raw_parts(bytes.as_ptr().add(5), 23) };
        assert!(tail.iter().all(|&b| b == 0), "{tail:?}");
    }

    #[test]
    fn a_busy_memo_computes_the_key() {
        let memo = KeyMemo::default();
        memo.key_of(b"first");
        let _held = memo.last.lock().unwrap();
        assert_eq!(memo.key_of(b"second"), TokenKey::of("second"));
        assert_eq!(memo.key_of(b"first"), TokenKey::of("first"));
    }

    #[test]
    fn same_bytes_is_equality() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{len}");
            if len > 0 {
                assert!(!same_bytes(&a, &a[..len - 1]), "{len}");
            }
            for at in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[at] ^= 1 << bit;
                    assert!(!same_bytes(&a, &b), "byte {at} bit {bit} of {len}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_sequence_of_tokens_gets_the_keys_blake3_gives(
            tokens in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"ab.".to_vec()), 0..12),
                1..40,
            )
        ) {
            let memo = KeyMemo::default();
            for token in &tokens {
                proptest::prop_assert_eq!(memo.key_of(token), TokenKey::of_bytes(token));
            }
        }
    }

    #[test]
    fn inserted_token_is_a_hit_until_valid_until() {
        let cache = TokenCache::new(10);
        let key = TokenKey::of("t1");
        assert!(cache.get(&key, 1000).is_none());
        cache.insert(key, claims("alice"), 1100, 1000);
        assert_eq!(cache.get(&key, 1000).unwrap().subject(), Some("alice"));
        assert!(cache.get(&key, 1099).is_some());
        assert!(cache.get(&key, 1100).is_none(), "expired entry is a miss");
        assert!(cache.get(&key, 1050).is_none(), "and it was removed");
        assert_eq!((cache.hits(), cache.misses()), (2, 3));
    }

    #[test]
    fn already_expired_claims_are_not_stored() {
        let cache = TokenCache::new(10);
        let key = TokenKey::of("t1");
        cache.insert(key, claims("alice"), 1000, 1000);
        assert!(cache.get(&key, 999).is_none());
    }

    #[test]
    fn zero_entries_turns_caching_off() {
        let cache = TokenCache::new(0);
        let key = TokenKey::of("t1");
        cache.insert(key, claims("alice"), 2000, 1000);
        assert!(cache.get(&key, 1000).is_none());
        assert_eq!(
            (cache.hits(), cache.misses(), cache.entry_count()),
            (0, 1, 0)
        );
    }

    #[test]
    fn entry_count_is_bounded_by_max_entries() {
        let cache = TokenCache::new(50);
        for i in 0..500 {
            cache.insert(TokenKey::of(&format!("t{i}")), claims("x"), 10_000, 1000);
        }
        assert!(cache.entry_count() <= 50, "{}", cache.entry_count());
    }

    #[test]
    fn compacted_claims_share_equal_names_and_keep_their_values() {
        let cache = TokenCache::new(10);
        let make = |sub: &str| {
            cache.compact(
                TokenClaims::for_tests(sub, &["echo.read", "echo.write"])
                    .with_audiences(&["api"])
                    .with_roles(&["ops"]),
            )
        };
        let (a, b) = (make("alice"), make("bob"));
        assert_eq!(
            a.scopes(),
            &*stella_core::identity::names(["echo.read", "echo.write"])
        );
        assert_eq!(b.audiences(), &*stella_core::identity::names(["api"]));
        assert_eq!(b.subject(), Some("bob"));
        for (x, y) in [
            (&a.scopes()[1], &b.scopes()[1]),
            (&a.audiences()[0], &b.audiences()[0]),
            (&a.roles()[0], &b.roles()[0]),
        ] {
            assert!(Arc::ptr_eq(x, y), "{x} is not shared");
        }
        // Past the limit names stay the token's own, with the same values.
        for i in 0..MAX_INTERNED {
            cache.compact(TokenClaims::for_tests("x", &[&format!("s{i}")]));
        }
        let (c, d) = (
            cache.compact(TokenClaims::for_tests("c", &["fresh"])),
            cache.compact(TokenClaims::for_tests("d", &["fresh"])),
        );
        assert_eq!(c.scopes(), d.scopes());
        assert!(!Arc::ptr_eq(&c.scopes()[0], &d.scopes()[0]));
    }

    #[test]
    fn distinct_tokens_do_not_share_entries() {
        let cache = TokenCache::new(10);
        cache.insert(TokenKey::of("a"), claims("alice"), 2000, 1000);
        cache.insert(TokenKey::of("b"), claims("bob"), 2000, 1000);
        assert_eq!(
            cache.get(&TokenKey::of("b"), 1000).unwrap().subject(),
            Some("bob")
        );
        assert!(cache.get(&TokenKey::of("c"), 1000).is_none());
    }
}

/// docs/design.md §5 budgets under 100 MiB of resident memory with 100k
/// cached tokens, measured as real RSS by `bench/run.sh tokens`. This counts the heap bytes the verified-token
/// cache holds for 100k tokens shaped like the Authority's (a counting
/// allocator, so the figure is exact and repeatable, unlike RSS). The
/// gateway idles at about 32 MiB, and with mimalloc, two workers and the
/// garbage of verification, RSS grows by about 1.4 times the live heap: so
/// the cache may hold at most 48 MiB. A unit test, because only unit tests
/// can make claims without verifying a token; allocations are counted per
/// thread, so tests running beside it do not count.
#[cfg(test)]
mod memory {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + n));
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    fn live() -> isize {
        LIVE.with(Cell::get)
    }

    #[test]
    fn a_hundred_thousand_cached_tokens_fit_in_the_memory_budget() {
        const TOKENS: u64 = 100_000;
        // Shards fill unevenly: a cache for exactly 100,000 starts evicting
        // a little before it holds them all.
        let cache = TokenCache::new(TOKENS + TOKENS / 10);
        let now = 1_800_000_000;
        let before = live();
        for i in 0..TOKENS {
            // Shaped like a client_credentials token from the test
            // Authority: 43-character jti, client id as subject, three
            // scopes, a tenant.
            let claims = TokenClaims::for_tests(
                &format!("svc-client-{i:08}"),
                &["echo.read", "echo.write", "admin"],
            )
            .with_tenant("acme")
            .with_audiences(&["http://gateway.local/api"]);
            let token = format!("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{i:064}.sig");
            // As `authenticate_bearer` stores them.
            let claims = Arc::new(cache.compact(claims));
            cache.insert(TokenKey::of(&token), claims, now + 3600, now);
        }
        assert_eq!(cache.entry_count(), TOKENS);
        let used = (live() - before) as f64;
        let per_token = used / TOKENS as f64;
        println!(
            "token cache: {:.1} MiB for {TOKENS} tokens, {per_token:.0} bytes each",
            used / 1048576.0
        );
        assert!(used > 0.0, "the allocator counted nothing");
        assert!(used < 48.0 * 1048576.0, "{per_token:.0} bytes per token");
    }
}
