//! Last-known-good documents of one cache: loaded once before the first
//! fetch, written after each successful one (`crate::lkg`).

use super::*;

impl JwksCache {
    /// Loads the persisted discovery and JWKS, once, if a state folder is
    /// configured and nothing was fetched yet. A copy is used only if its
    /// record matches this issuer and its document passes the checks a
    /// fetched one does; otherwise it is ignored with a log line naming
    /// the file and the reason.
    pub fn load_persisted(&self) {
        let Some(persisted) = &self.persisted else {
            return;
        };
        if persisted.loaded.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.clock.now();
        let store = &persisted.store;
        if let Some(record) = store.load(What::Discovery, now) {
            let checked = record.and_then(|(doc, fetched_at)| {
                Discovery::from_document(&doc, &self.issuer, self.require_https)
                    .map(|d| (d, fetched_at))
                    .map_err(|e| Ignored::Invalid(e.to_string()))
            });
            match checked {
                Ok((discovery, fetched_at)) => {
                    self.count_load(What::Discovery, true);
                    let mut slot = self
                        .discovery
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    if slot.is_none() {
                        *slot = Some(Arc::new(discovery));
                        self.counters
                            .discovery_fetched_at
                            .store(fetched_at.max(1), Ordering::Relaxed);
                    }
                    tracing::info!(
                        issuer = %self.issuer,
                        file = %store.path(What::Discovery).display(),
                        age_seconds = now.saturating_sub(fetched_at),
                        "persisted authority discovery document loaded"
                    );
                }
                Err(reason) => self.ignored(What::Discovery, &reason),
            }
        }
        if let Some(record) = store.load(What::Jwks, now) {
            let checked = record.and_then(|(doc, fetched_at)| {
                KeySet::from_jwks(&doc)
                    .map(|keys| (keys, fetched_at))
                    .map_err(|e| Ignored::Invalid(e.to_string()))
            });
            match checked {
                Ok((keys, fetched_at)) => {
                    self.count_load(What::Jwks, true);
                    let age = now.saturating_sub(fetched_at);
                    tracing::info!(
                        issuer = %self.issuer,
                        file = %store.path(What::Jwks).display(),
                        keys = keys.len(),
                        kids = ?keys.kids(),
                        age_seconds = age,
                        max_age_seconds = self.max_age,
                        "persisted authority signing keys loaded"
                    );
                    if age > self.max_age {
                        tracing::warn!(
                            issuer = %self.issuer,
                            age_seconds = age,
                            max_age_seconds = self.max_age,
                            "persisted authority signing keys are older than allowed; \
                             they serve no token until a fetch succeeds"
                        );
                    }
                    let mut slot = self
                        .snapshot
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    // A fetch that finished first is newer: keep it.
                    if slot.fetched_at.is_none() {
                        *slot = Arc::new(Snapshot {
                            keys,
                            fetched_at: Some(fetched_at),
                        });
                    }
                }
                Err(reason) => self.ignored(What::Jwks, &reason),
            }
        }
    }

    pub(super) fn ignored(&self, what: What, reason: &Ignored) {
        self.count_load(what, false);
        let file = self
            .persisted
            .as_ref()
            .map(|p| p.store.path(what).display().to_string());
        tracing::warn!(
            issuer = %self.issuer,
            file = file.as_deref().unwrap_or(""),
            %reason,
            "persisted authority {what} ignored"
        );
    }

    pub(super) fn count_load(&self, what: What, loaded: bool) {
        let row = usize::from(what == What::Jwks);
        self.counters.lkg_loads[row][usize::from(!loaded)].fetch_add(1, Ordering::Relaxed);
    }

    /// Persisted documents read at start, by document and result
    /// (`loaded` or `ignored`).
    pub fn lkg_loads(&self, what: What, loaded: bool) -> u64 {
        let row = usize::from(what == What::Jwks);
        self.counters.lkg_loads[row][usize::from(!loaded)].load(Ordering::Relaxed)
    }

    /// Failed writes of the last-known-good copies.
    pub fn lkg_write_failures(&self) -> u64 {
        self.counters.lkg_write_failures.load(Ordering::Relaxed)
    }

    /// Writes a fetched document to the state folder, off the async
    /// threads. A failure is counted and logged once per streak; it never
    /// fails the fetch.
    pub(super) async fn persist(&self, what: What, document: JsonObject, fetched_at: u64) {
        let Some(persisted) = &self.persisted else {
            return;
        };
        let store = persisted.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store
                .save(what, &document, fetched_at)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match written {
            Ok(()) => {
                if persisted.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        issuer = %self.issuer,
                        file = %persisted.store.path(what).display(),
                        "persisting the authority documents works again"
                    );
                }
            }
            Err(error) => {
                self.counters
                    .lkg_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                if !persisted.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        issuer = %self.issuer,
                        file = %persisted.store.path(what).display(),
                        %error,
                        "cannot persist the authority {what}; a restart during an outage \
                         would start without it"
                    );
                }
            }
        }
    }
}
