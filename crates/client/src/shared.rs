//! What the verifier, its stream follower and its usage reporter share:
//! the cache, the trust window, the stream's state, and the question to
//! Latchkey.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::cache::{Entry, KeyCache};
use crate::clock::{self, Tick};
use crate::context::RequestContext;
use crate::decide::Catalogue;
use crate::error::Error;
use crate::verification::{Answer, Verification, VerifiedKey};

/// Whose keys the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Tenant(Uuid),
    Every,
}

/// What the stream task keeps.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Whether the stream is connected (its opening heartbeat came).
    pub(crate) connected: bool,
    /// Whose keys the connected stream carries; none before it says.
    pub(crate) scope: Option<Scope>,
    /// The catalogue fetched with the connection.
    pub(crate) catalogue: Option<Arc<Catalogue>>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) asked: AtomicU64,
    pub(crate) reported: AtomicU64,
    pub(crate) report_failures: AtomicU64,
    pub(crate) signals: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) connections: AtomicU64,
}

/// What the verifier and its stream task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) stream_key: String,
    pub(crate) http: reqwest::Client,
    pub(crate) cache: KeyCache,
    /// Until when (the ticks of a [`Tick`]) cached answers may be used.
    pub(crate) trusted_until: AtomicU64,
    pub(crate) state: Mutex<StreamState>,
    pub(crate) cache_ttl: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) counters: Counters,
}

impl Shared {
    /// Whether cached answers may be used at `now`.
    pub(crate) fn trusted(&self, now: Tick) -> bool {
        now.as_ticks() < self.trusted_until.load(Ordering::Acquire)
    }

    /// Trusts the cache until `until`.
    pub(crate) fn trust_until(&self, until: Tick) {
        self.trusted_until.store(until.as_ticks(), Ordering::Release);
    }

    /// Trusts the cache no later than `until`.
    pub(crate) fn distrust_after(&self, until: Tick) {
        self.trusted_until.fetch_min(until.as_ticks(), Ordering::AcqRel);
    }

    pub(crate) fn lock_state(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cache entry for a key Latchkey just verified; `None` when it
    /// must not be cached (limited, another tenant's, a permission the
    /// catalogue lacks, its secret about to end, or the stream not up).
    pub(crate) fn entry_for(&self, key: &Arc<VerifiedKey>, now: Tick) -> Option<Entry> {
        if key.is_limited() || !self.trusted(now) {
            return None;
        }
        let catalogue = {
            let state = self.lock_state();
            let in_scope = match state.scope? {
                Scope::Every => true,
                Scope::Tenant(tenant) => tenant == key.tenant_id,
            };
            if !in_scope {
                return None;
            }
            state.catalogue.clone()?
        };
        let rules = catalogue.rules_of(key)?;
        let valid_until = match key.valid_until {
            Some(until) => Some(clock::after(now, SystemTime::from(until).duration_since(SystemTime::now()).ok()?)),
            None => None,
        };
        let fresh_until = clock::after(now, self.cache_ttl);
        Some(Entry::new(key.clone(), rules, catalogue, fresh_until, valid_until))
    }

    /// Asks Latchkey (`POST /v1/keys/verify`).
    pub(crate) async fn ask(
        &self,
        secret: &str,
        context: &RequestContext,
        ip: Option<IpAddr>,
    ) -> Result<Verification, Error> {
        self.counters.asked.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "key": secret,
            "cloud": context.cloud.map(|c| c.as_str()),
            "permissions": context.permissions,
            "ip": ip.map(|ip| ip.to_string()),
            "cost": context.cost,
        });
        let response = self
            .http
            .post(format!("{}/v1/keys/verify", self.url))
            .timeout(self.request_timeout)
            .json(&body)
            .send()
            .await
            // reqwest's errors name the URL, never the body.
            .map_err(|e| Error::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Error::Unavailable(format!("Latchkey answered {status}")));
        }
        let bytes = response.bytes().await.map_err(|e| Error::Unavailable(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(Error::Rejected(message));
        }
        serde_json::from_slice::<Answer>(&bytes)
            .ok()
            .and_then(Answer::into_verification)
            .ok_or_else(|| Error::Unavailable("Latchkey's answer is not a verification".into()))
    }
}
