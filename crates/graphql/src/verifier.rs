//! Verification of presented API keys, at the speed of a hash lookup.
//!
//! * Malformed keys (shape, checksum) are refused without the database.
//! * A verified key is cached in memory, keyed by an HMAC (with a random
//!   per-process key) of the presented secret, never the secret itself. A
//!   cached verification is one HMAC and one map lookup: no argon2, no database.
//! * A cold verification is one indexed lookup by the key's public lookup id
//!   and one argon2 verification on the blocking pool, behind a semaphore.
//! * Failures are counted per lookup id and per client address; past the
//!   limit, cold verifications are refused (`RATE_LIMITED`) without argon2,
//!   while cached valid keys keep working.
//! * Rotation and deletion invalidate the cache at once in this process; the
//!   TTL bounds how long another process may still accept an old secret.
//! * Use is recorded in memory and flushed to `last_used_at` in batches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use latchkey_domain::hashing::verify_secret;
use latchkey_domain::{ApiKeyId, LookupId, ParsedKey, TenantId, UserId};
use latchkey_store::{Store, StoreError};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::service::ServiceError;

/// Tuning of verification.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Most cached keys.
    pub cache_capacity: usize,
    /// How long a cached verification is trusted without looking again.
    pub cache_ttl: Duration,
    /// The window failures are counted in.
    pub failure_window: Duration,
    /// Failed cold verifications per lookup id per window before `RATE_LIMITED`.
    pub max_failures_per_key: u32,
    /// Failed verifications per client address per window before `RATE_LIMITED`.
    pub max_failures_per_client: u32,
    /// Concurrent argon2 verifications.
    pub argon_concurrency: usize,
    /// How long a cold verification waits for an argon2 slot before it is
    /// refused as `RATE_LIMITED`.
    pub argon_queue_timeout: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        VerifierConfig {
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(30),
            failure_window: Duration::from_secs(60),
            max_failures_per_key: 10,
            max_failures_per_client: 300,
            argon_concurrency: cores,
            argon_queue_timeout: Duration::from_millis(500),
        }
    }
}

/// A live key, as verification knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner.
    pub owner_id: UserId,
    /// Its credential version (incremented by each rotation).
    pub version: i32,
}

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// A live key.
    Valid(VerifiedKey),
    /// Wrong shape or checksum (decided without the database).
    Malformed,
    /// Not a live key: unknown, rotated away, deleted, or a wrong secret.
    Invalid,
    /// Too many failures recently, or too much argon2 work queued.
    RateLimited,
}

impl VerifyOutcome {
    /// The wire code of a refusal.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            VerifyOutcome::Valid(_) => None,
            VerifyOutcome::Malformed => Some("MALFORMED"),
            VerifyOutcome::Invalid => Some("INVALID"),
            VerifyOutcome::RateLimited => Some("RATE_LIMITED"),
        }
    }
}

type Digest = [u8; 32];

#[derive(Default)]
struct CacheInner {
    entries: HashMap<Digest, (VerifiedKey, Instant)>,
    by_key: HashMap<ApiKeyId, Digest>,
    epoch: u64,
}

/// Verified keys in memory, keyed by an HMAC of the presented secret.
pub struct VerifiedKeyCache {
    mac: Hmac<Sha256>,
    inner: RwLock<CacheInner>,
    capacity: usize,
    ttl: Duration,
}

impl std::fmt::Debug for VerifiedKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedKeyCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl VerifiedKeyCache {
    /// An empty cache with a fresh random HMAC key.
    pub fn new(capacity: usize, ttl: Duration) -> Result<Self, ServiceError> {
        use rand::TryRng;
        let mut key = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut key).map_err(|_| ServiceError::Blocking("no randomness".into()))?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|e| ServiceError::Blocking(e.to_string()))?;
        Ok(VerifiedKeyCache { mac, inner: RwLock::new(CacheInner::default()), capacity: capacity.max(1), ttl })
    }

    /// The cache key of a presented secret.
    pub fn digest(&self, presented: &str) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(presented.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A live cached entry.
    pub fn get(&self, digest: &Digest, now: Instant) -> Option<VerifiedKey> {
        let inner = self.inner.read().ok()?;
        inner.entries.get(digest).filter(|(_, expires)| *expires > now).map(|(key, _)| *key)
    }

    /// The current invalidation epoch; pass it back to [`Self::insert`].
    pub fn epoch(&self) -> u64 {
        self.inner.read().map(|i| i.epoch).unwrap_or(u64::MAX)
    }

    /// Caches a verification that started at `epoch`, unless an
    /// invalidation happened since (the result may be stale then).
    pub fn insert(&self, digest: Digest, key: VerifiedKey, epoch: u64, now: Instant) {
        let Ok(mut inner) = self.inner.write() else { return };
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= self.capacity {
            inner.entries.retain(|_, (_, expires)| *expires > now);
            if inner.entries.len() >= self.capacity {
                // Still full of live entries: drop a tenth, arbitrarily.
                let victims: Vec<Digest> = inner.entries.keys().take(self.capacity / 10 + 1).copied().collect();
                for d in victims {
                    inner.entries.remove(&d);
                }
            }
            let CacheInner { entries, by_key, .. } = &mut *inner;
            by_key.retain(|_, d| entries.contains_key(d));
        }
        if let Some(old) = inner.by_key.insert(key.key_id, digest) {
            inner.entries.remove(&old);
        }
        inner.entries.insert(digest, (key, now + self.ttl));
    }

    /// Forgets a key (rotated or deleted) at once.
    pub fn invalidate(&self, key_id: ApiKeyId) {
        if let Ok(mut inner) = self.inner.write() {
            inner.epoch = inner.epoch.wrapping_add(1);
            if let Some(d) = inner.by_key.remove(&key_id) {
                inner.entries.remove(&d);
            }
        }
    }

    /// Forgets everything.
    pub fn invalidate_all(&self) {
        if let Ok(mut inner) = self.inner.write() {
            inner.epoch = inner.epoch.wrapping_add(1);
            inner.entries.clear();
            inner.by_key.clear();
        }
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.entries.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Key(String),
    Client(IpAddr),
}

/// Counts failures per lookup id and per client in fixed windows.
#[derive(Debug)]
struct FailureLimiter {
    window: Duration,
    per_key: u32,
    per_client: u32,
    counts: Mutex<HashMap<Subject, (Instant, u32)>>,
}

impl FailureLimiter {
    fn count(&self, counts: &HashMap<Subject, (Instant, u32)>, subject: &Subject, now: Instant) -> u32 {
        counts.get(subject).filter(|(start, _)| now.duration_since(*start) < self.window).map_or(0, |(_, n)| *n)
    }

    fn limited(&self, lookup: &LookupId, client: Option<IpAddr>, now: Instant) -> bool {
        let Ok(counts) = self.counts.lock() else { return false };
        if self.count(&counts, &Subject::Key(lookup.as_str().to_owned()), now) >= self.per_key {
            return true;
        }
        client.is_some_and(|ip| self.count(&counts, &Subject::Client(ip), now) >= self.per_client)
    }

    fn client_limited(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let Ok(counts) = self.counts.lock() else { return false };
        client.is_some_and(|ip| self.count(&counts, &Subject::Client(ip), now) >= self.per_client)
    }

    fn fail(&self, lookup: &LookupId, client: Option<IpAddr>, now: Instant) {
        let Ok(mut counts) = self.counts.lock() else { return };
        if counts.len() > 100_000 {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let subjects = [Some(Subject::Key(lookup.as_str().to_owned())), client.map(Subject::Client)];
        for subject in subjects.into_iter().flatten() {
            let entry = counts.entry(subject).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

/// Verifies presented keys; see the module documentation.
pub struct KeyVerifier {
    store: Store,
    clock: Arc<dyn Clock>,
    cache: Arc<VerifiedKeyCache>,
    limiter: FailureLimiter,
    argon: Semaphore,
    argon_queue_timeout: Duration,
    usage: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
}

impl std::fmt::Debug for KeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVerifier").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl KeyVerifier {
    /// A verifier over `store`, caching in `cache`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, cache: Arc<VerifiedKeyCache>, config: &VerifierConfig) -> Self {
        KeyVerifier {
            store,
            clock,
            cache,
            limiter: FailureLimiter {
                window: config.failure_window,
                per_key: config.max_failures_per_key,
                per_client: config.max_failures_per_client,
                counts: Mutex::new(HashMap::new()),
            },
            argon: Semaphore::new(config.argon_concurrency.max(1)),
            argon_queue_timeout: config.argon_queue_timeout,
            usage: Mutex::new(HashMap::new()),
        }
    }

    /// The cache (for invalidation).
    pub fn cache(&self) -> &Arc<VerifiedKeyCache> {
        &self.cache
    }

    fn record_use(&self, key: ApiKeyId) {
        let now = self.clock.now();
        if let Ok(mut usage) = self.usage.lock() {
            let at = usage.entry(key).or_insert(now);
            if *at < now {
                *at = now;
            }
        }
    }

    /// Verifies `presented`, from `client` when known.
    pub async fn verify(&self, presented: &str, client: Option<IpAddr>) -> Result<VerifyOutcome, ServiceError> {
        let Ok(parsed) = ParsedKey::parse(presented) else {
            return Ok(VerifyOutcome::Malformed);
        };
        let now = Instant::now();
        let digest = self.cache.digest(presented);
        if let Some(hit) = self.cache.get(&digest, now) {
            self.record_use(hit.key_id);
            return Ok(VerifyOutcome::Valid(hit));
        }
        let lookup = parsed.lookup_id();
        if self.limiter.limited(&lookup, client, now) {
            return Ok(VerifyOutcome::RateLimited);
        }
        let epoch = self.cache.epoch();
        let Some(stored) = self.store.credential_by_lookup_id(&lookup).await? else {
            self.limiter.fail(&lookup, client, now);
            return Ok(VerifyOutcome::Invalid);
        };
        let Ok(Ok(_permit)) = tokio::time::timeout(self.argon_queue_timeout, self.argon.acquire()).await else {
            return Ok(VerifyOutcome::RateLimited);
        };
        let presented_owned = presented.to_owned();
        let hash = stored.hash.clone();
        let matches = tokio::task::spawn_blocking(move || {
            ParsedKey::parse(&presented_owned).is_ok_and(|p| verify_secret(&p, &hash))
        })
        .await
        .map_err(|e| ServiceError::Blocking(e.to_string()))?;
        if !matches {
            self.limiter.fail(&lookup, client, Instant::now());
            return Ok(VerifyOutcome::Invalid);
        }
        let key = VerifiedKey {
            key_id: stored.key_id,
            tenant_id: stored.tenant_id,
            owner_id: stored.owner_id,
            version: stored.version,
        };
        self.cache.insert(digest, key, epoch, Instant::now());
        self.record_use(key.key_id);
        Ok(VerifyOutcome::Valid(key))
    }

    /// Whether `client` is over its failure limit (checked before work that
    /// does not depend on a particular key).
    pub fn client_limited(&self, client: Option<IpAddr>) -> bool {
        self.limiter.client_limited(client, Instant::now())
    }

    /// Writes recorded uses to `last_used_at` (forward only); returns how
    /// many keys were updated. On failure the uses are kept for next time.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let batch: Vec<(ApiKeyId, DateTime<Utc>)> = match self.usage.lock() {
            Ok(mut usage) => usage.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.store.record_key_use(&batch).await {
            if let Ok(mut usage) = self.usage.lock() {
                for (key, at) in batch {
                    let entry = usage.entry(key).or_insert(at);
                    if *entry < at {
                        *entry = at;
                    }
                }
            }
            return Err(e);
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key(n: u128) -> VerifiedKey {
        VerifiedKey {
            key_id: ApiKeyId(Uuid::from_u128(n)),
            tenant_id: TenantId(Uuid::from_u128(100)),
            owner_id: UserId(Uuid::from_u128(200)),
            version: 1,
        }
    }

    #[test]
    fn cache_hits_until_ttl_or_invalidation() {
        let cache = VerifiedKeyCache::new(10, Duration::from_secs(30)).unwrap();
        let now = Instant::now();
        let d = cache.digest("lk_secret");
        assert_ne!(d, cache.digest("lk_secreT"));
        let e = cache.epoch();
        cache.insert(d, key(1), e, now);
        assert_eq!(cache.get(&d, now), Some(key(1)));
        assert_eq!(cache.get(&d, now + Duration::from_secs(31)), None, "expired");
        cache.invalidate(key(1).key_id);
        assert_eq!(cache.get(&d, now), None, "invalidated");
    }

    #[test]
    fn stale_verifications_are_not_cached_after_an_invalidation() {
        let cache = VerifiedKeyCache::new(10, Duration::from_secs(30)).unwrap();
        let now = Instant::now();
        let started = cache.epoch();
        cache.invalidate(key(1).key_id); // a rotation lands while verifying
        let d = cache.digest("lk_old");
        cache.insert(d, key(1), started, now);
        assert_eq!(cache.get(&d, now), None);
    }

    #[test]
    fn one_secret_per_key_and_bounded_size() {
        let cache = VerifiedKeyCache::new(10, Duration::from_secs(30)).unwrap();
        let now = Instant::now();
        let (old, new) = (cache.digest("lk_a"), cache.digest("lk_b"));
        cache.insert(old, key(1), cache.epoch(), now);
        cache.insert(new, key(1), cache.epoch(), now);
        assert_eq!(cache.get(&old, now), None, "a key's previous secret is dropped");
        assert_eq!(cache.get(&new, now), Some(key(1)));
        for n in 2..100 {
            cache.insert(cache.digest(&format!("lk_{n}")), key(n), cache.epoch(), now);
            assert!(cache.len() <= 10);
        }
        cache.invalidate_all();
        assert!(cache.is_empty());
    }

    #[test]
    fn limiter_counts_per_key_and_per_client_in_windows() {
        let limiter = FailureLimiter {
            window: Duration::from_secs(60),
            per_key: 3,
            per_client: 5,
            counts: Mutex::new(HashMap::new()),
        };
        let now = Instant::now();
        let a = LookupId::from_stored("aaaaaaaaaaaa".into());
        let b = LookupId::from_stored("bbbbbbbbbbbb".into());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(!limiter.limited(&a, Some(ip), now));
            limiter.fail(&a, Some(ip), now);
        }
        assert!(limiter.limited(&a, None, now), "the key is limited for everyone");
        assert!(!limiter.limited(&b, None, now));
        limiter.fail(&b, Some(ip), now);
        limiter.fail(&b, Some(ip), now);
        assert!(limiter.limited(&b, Some(ip), now), "the client is limited for every key");
        assert!(!limiter.limited(&b, Some("10.0.0.2".parse().unwrap()), now));
        assert!(!limiter.limited(&a, None, now + Duration::from_secs(61)), "windows end");
    }
}
