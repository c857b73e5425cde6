//! The verifier: answers from the cache when it may, asks Latchkey
//! otherwise, and keeps the cache true with the revocation stream.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::{Digest, KeyCache, LastSeen};
use crate::clock;
use crate::context::RequestContext;
use crate::error::Error;
use crate::shared::{Counters, Shared};
use crate::verification::Verification;

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
            state: Mutex::default(),
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
    /// Reports that failed (each is sent again, as it was, until taken).
    pub report_failures: u64,
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
            report_failures: counters.report_failures.load(Ordering::Relaxed),
            cached_keys,
            signals: counters.signals.load(Ordering::Relaxed),
            flushes: counters.flushes.load(Ordering::Relaxed),
            connections: counters.connections.load(Ordering::Relaxed),
            connected: shared.lock_state().connected,
            trusted: shared.trusted(clock::now()),
        }
    }
}
