//! The verifier: answers from the cache when it may, asks Latchkey
//! otherwise, and keeps the cache true with the revocation stream.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::cache::{Digest, Entry, KeyCache, LastSeen};
use crate::clock::{self, Tick};
use crate::context::RequestContext;
use crate::decide::Catalogue;
use crate::error::Error;
use crate::verification::{Answer, Verification, VerifiedKey};

/// The most permissions a request may name (as `/v1/keys/verify`).
const MAX_ASKED_PERMISSIONS: usize = 64;

/// How to build a [`Verifier`]; from [`Verifier::builder`].
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    url: String,
    stream_key: String,
    cache_capacity: usize,
    cache_ttl: Duration,
    stale_after: Duration,
    request_timeout: Duration,
    report_every: Duration,
}

impl VerifierBuilder {
    /// The most keys cached (default 10,000); the entry nearest its
    /// deadline makes room for a new one.
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// How long a cached verification is kept at most (default 60 s), a
    /// backstop: revocations are pushed. Latchkey sees a cached key's use
    /// at least this often, which keeps its "last used" that fresh.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long cached verifications are still used once the stream is
    /// down (default 5 s); after that every verification asks Latchkey,
    /// and gets [`Error::Unavailable`] if Latchkey cannot answer.
    pub fn stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// How often the verifications answered from the cache are reported to
    /// Latchkey, so its usage and "last used" count them (default 10 s).
    pub fn report_uses_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }

    /// How long a question to Latchkey may take (default 2 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The verifier, with its stream started on the current Tokio runtime.
    /// Fails for a URL that is not `http(s)://…` (HTTPS needs the `rustls`
    /// feature), an empty stream key, or outside a Tokio runtime.
    pub fn build(self) -> Result<Verifier, Error> {
        let url = self.url.trim_end_matches('/').to_owned();
        let https = url.starts_with("https://");
        if !(https || url.starts_with("http://")) || url.len() <= "https://".len() {
            return Err(Error::Config(format!("the Latchkey URL must be http(s)://host[:port], not {url:?}")));
        }
        if https && !cfg!(feature = "rustls") {
            return Err(Error::Config("an https:// URL needs the `rustls` feature of latchkey-client".into()));
        }
        if self.stream_key.trim().is_empty() || self.stream_key.chars().any(char::is_control) {
            return Err(Error::Config("the stream key is empty or not a key".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("build the verifier inside a Tokio runtime".into()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.request_timeout)
            .build()
            .map_err(|e| Error::Config(format!("no HTTP client: {e}")))?;
        let cache = KeyCache::new(self.cache_capacity)
            .ok_or_else(|| Error::Config("the system's random generator failed".into()))?;
        let shared = Arc::new(Shared {
            url,
            stream_key: self.stream_key,
            http,
            cache,
            trusted_until: AtomicU64::new(0),
            state: Mutex::new(StreamState::default()),
            cache_ttl: self.cache_ttl,
            stale_after: self.stale_after,
            request_timeout: self.request_timeout,
            counters: Counters::default(),
        });
        let stream = runtime.spawn(crate::stream::follow(Arc::downgrade(&shared)));
        let reports = runtime.spawn(crate::report::report_uses(Arc::downgrade(&shared), self.report_every));
        Ok(Verifier { shared, _tasks: Arc::new(StopOnDrop([stream, reports])) })
    }
}

/// Verifies Latchkey keys in process: see the crate documentation.
/// Cheap to clone; the stream stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
    _tasks: Arc<StopOnDrop>,
}

/// The stream follower and the usage reporter, stopped with the last clone.
#[derive(Debug)]
struct StopOnDrop([tokio::task::JoinHandle<()>; 2]);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Refuses what Latchkey would refuse to answer.
pub(crate) fn check(context: &RequestContext) -> Result<(), Error> {
    if context.permissions.len() > MAX_ASKED_PERMISSIONS {
        return Err(Error::Rejected(format!("a request may name at most {MAX_ASKED_PERMISSIONS} permissions")));
    }
    Ok(())
}

/// What the verifier did so far, to watch it (and to test it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Verifications answered from the cache.
    pub cache_hits: u64,
    /// Verifications Latchkey answered.
    pub asked: u64,
    /// Cached verifications reported to Latchkey (counted in its usage).
    pub reported: u64,
    /// Keys cached now.
    pub cached_keys: usize,
    /// `revoked` and `changed` events applied.
    pub signals: u64,
    /// `flush` events applied (and resets after a connection without resume).
    pub flushes: u64,
    /// Stream connections opened.
    pub connections: u64,
    /// Whether the stream is connected now.
    pub connected: bool,
    /// Whether the cache may be used now (the stream is up, or was less
    /// than `stale_after` ago).
    pub trusted: bool,
}

impl Verifier {
    /// A builder for a verifier of the keys of `stream_key`'s tenant,
    /// asking Latchkey at `url` (e.g. `http://latchkey:8080`). The stream
    /// key must hold the `verify:stream` permission.
    pub fn builder(url: impl Into<String>, stream_key: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            url: url.into(),
            stream_key: stream_key.into(),
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(60),
            stale_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            report_every: Duration::from_secs(10),
        }
    }

    /// Verifies `secret` for a request needing `context`: the answer
    /// `/v1/keys/verify` gives. From the cache when the key was verified
    /// before, is not limited, is of the stream's tenant, and the stream is
    /// up (or down for less than `stale_after`); otherwise Latchkey is asked.
    pub async fn verify(&self, secret: &str, context: &RequestContext) -> Result<Verification, Error> {
        check(context)?;
        match self.cached(secret, context, context.ip) {
            Ok(answer) => Ok(answer),
            // Boxed: the question's state (an HTTP exchange) stays off the cached path's future.
            Err(digest) => Box::pin(self.ask_and_keep(secret, context, context.ip, digest)).await,
        }
    }

    /// The cached answer for `secret` in `context` from `ip`, or the
    /// secret's digest to cache Latchkey's answer under.
    pub(crate) fn cached(
        &self,
        secret: &str,
        context: &RequestContext,
        ip: Option<IpAddr>,
    ) -> Result<Verification, Digest> {
        let shared = &*self.shared;
        let now = clock::now();
        let digest = shared.cache.digest(secret);
        if !shared.trusted(now) {
            return Err(digest);
        }
        let decided = shared.cache.answer(&digest, now, |entry| {
            Some(match entry.catalogue.decide(&entry.rules, context, ip)? {
                Ok(()) => {
                    // Reported to Latchkey later (see `report`), so its usage counts this one.
                    entry.uses += 1;
                    entry.last_use = Some(LastSeen { at: now, cloud: context.cloud, ip });
                    Verification::Valid(entry.key.clone())
                }
                Err(refusal) => Verification::Refused(refusal),
            })
        });
        decided.ok_or(digest)
    }

    /// Asks Latchkey, and caches a working key's answer if it may (or
    /// drops what was cached for a secret Latchkey refuses).
    pub(crate) async fn ask_and_keep(
        &self,
        secret: &str,
        context: &RequestContext,
        ip: Option<IpAddr>,
        digest: Digest,
    ) -> Result<Verification, Error> {
        let shared = &*self.shared;
        let epoch = shared.cache.epoch();
        let answer = shared.ask(secret, context, ip).await?;
        match &answer {
            Verification::Valid(key) => match shared.entry_for(key, clock::now()) {
                Some(entry) => shared.cache.insert(digest, entry, epoch),
                None => shared.cache.remove(&digest),
            },
            Verification::Refused(refusal) if refusal.code.status() == 401 => shared.cache.remove(&digest),
            Verification::Refused(_) => {}
        }
        Ok(answer)
    }

    /// What it did so far.
    pub fn stats(&self) -> Stats {
        let shared = &*self.shared;
        let (cached_keys, cache_hits) = shared.cache.counts();
        let counters = &shared.counters;
        Stats {
            cache_hits,
            asked: counters.asked.load(Ordering::Relaxed),
            reported: counters.reported.load(Ordering::Relaxed),
            cached_keys,
            signals: counters.signals.load(Ordering::Relaxed),
            flushes: counters.flushes.load(Ordering::Relaxed),
            connections: counters.connections.load(Ordering::Relaxed),
            connected: shared.lock_state().connected,
            trusted: shared.trusted(clock::now()),
        }
    }
}

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
    trusted_until: AtomicU64,
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
    fn entry_for(&self, key: &Arc<VerifiedKey>, now: Tick) -> Option<Entry> {
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
        Some(Entry {
            key: key.clone(),
            rules,
            catalogue,
            fresh_until,
            valid_until,
            revalidating: false,
            uses: 0,
            last_use: None,
        })
    }

    /// Asks Latchkey (`POST /v1/keys/verify`).
    async fn ask(&self, secret: &str, context: &RequestContext, ip: Option<IpAddr>) -> Result<Verification, Error> {
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
