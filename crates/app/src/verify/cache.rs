//! Verified keys in memory, keyed by an HMAC of the presented key (under a
//! random per-process key), never the key itself.
//!
//! Revocation is pushed (rotate/delete invalidate at once in this process,
//! `NOTIFY` reaches other replicas, a listener reconnect flushes everything),
//! so the TTL is only a backstop. The invalidation epoch keeps a
//! verification that raced a rotation or deletion out of the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use latchkey_domain::restrictions::{PermissionSet, Restrictions};
use latchkey_domain::usage::UsageOutcome;
use latchkey_domain::{ApiKeyId, TenantId, UserId};
use rand::TryRng;
use sha2::Sha256;

use super::budgets::KeyBudgets;
use super::shards::ShardedMap;
use super::usage::{UsageRecorder, UseTally};
use crate::error::{AppError, AppResult};

/// The cache key of a presented secret.
pub type Digest = [u8; 32];

/// A live key, as verification knows it: one shared allocation, so a cache
/// hit costs one reference count, whatever the key carries.
#[derive(Clone, Debug)]
pub struct VerifiedKey(Arc<Verified>);

impl VerifiedKey {
    /// Wraps what verification learned of a key.
    pub fn new(verified: Verified) -> Self {
        VerifiedKey(Arc::new(verified))
    }
}

impl std::ops::Deref for VerifiedKey {
    type Target = Verified;

    fn deref(&self) -> &Verified {
        &self.0
    }
}

/// What verification learned of a live key.
#[derive(Debug)]
pub struct Verified {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner.
    pub owner_id: UserId,
    /// Its credential version (incremented by each rotation).
    pub version: i32,
    /// When this secret stops working (the key's expiry, or the end of a
    /// rotation's overlap for a previous secret); a cached verification is
    /// not answered past it. None for no limit.
    pub valid_until: Option<DateTime<Utc>>,
    /// What the key may do, where and from where (decided per request).
    pub restrictions: Arc<Restrictions>,
    /// What its owner may do: a key never does more.
    pub owner_may: PermissionSet,
    /// A front end's rendering of this verdict, made on first use and reused
    /// for as long as the entry is cached (e.g. the REST response body).
    pub rendered: OnceLock<String>,
    /// Another front end's rendering, as header values (e.g. what forward
    /// authentication tells the gateway), made and kept likewise.
    pub rendered_headers: OnceLock<Vec<String>>,
    /// Whether this is the key's previous secret, during a rotation's overlap.
    pub previous: bool,
    /// Its successful verifications not yet handed to the recorder: a key
    /// used many times a second takes the recorder's lock once per second.
    pub(crate) tally: UseTally,
    /// Where the tally goes, also when this entry is dropped.
    pub(crate) recorder: Arc<UsageRecorder>,
    /// The rate limits (its own and its owner's) and credits it spends.
    pub(crate) budgets: KeyBudgets,
}

impl Verified {
    /// What a successful verification of this secret counts as.
    pub fn valid_outcome(&self) -> UsageOutcome {
        if self.previous { UsageOutcome::ValidPreviousSecret } else { UsageOutcome::Valid }
    }

    /// Hands the uses the tally holds to the recorder.
    pub(crate) fn hand_over_uses(&self) {
        self.recorder.count_handed(self.key_id, self.tenant_id, self.valid_outcome(), self.tally.take());
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        self.hand_over_uses();
    }
}

impl PartialEq for VerifiedKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        (a.key_id, a.tenant_id, a.owner_id, a.version, a.valid_until, a.owner_may)
            == (b.key_id, b.tenant_id, b.owner_id, b.version, b.valid_until, b.owner_may)
            && a.restrictions == b.restrictions
    }
}

impl Eq for VerifiedKey {}

/// Verified keys in memory; see the module documentation.
pub struct VerifiedKeyCache {
    mac: Hmac<Sha256>,
    entries: ShardedMap<Digest, (VerifiedKey, Instant)>,
    by_key: ShardedMap<ApiKeyId, Digest>,
    epoch: AtomicU64,
    ttl: Duration,
}

impl std::fmt::Debug for VerifiedKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedKeyCache")
            .field("capacity", &self.entries.capacity())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl VerifiedKeyCache {
    /// An empty cache of about `capacity` keys with a fresh random HMAC key.
    pub fn new(capacity: usize, ttl: Duration) -> AppResult<Self> {
        let mut key = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut key).map_err(|e| AppError::internal(&e))?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|e| AppError::internal(&e))?;
        Ok(VerifiedKeyCache {
            mac,
            entries: ShardedMap::new(capacity),
            // Twice the entries: mappings of evicted entries linger until cleaned.
            by_key: ShardedMap::new(capacity.saturating_mul(2)),
            epoch: AtomicU64::new(0),
            ttl,
        })
    }

    /// The cache key of a presented secret.
    pub fn digest(&self, presented: &str) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(presented.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A live cached entry.
    pub fn get(&self, digest: &Digest, now: Instant) -> Option<VerifiedKey> {
        let shard = self.entries.shard(digest);
        shard.get(digest).filter(|(_, expires)| *expires > now).map(|(key, _)| key.clone())
    }

    /// The current invalidation epoch; read it before looking a key up, and
    /// pass it back to [`Self::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a verification that started at `epoch`, unless an invalidation
    /// happened since (its result may be stale then). A key has at most one
    /// cached secret: caching a new one drops the old.
    pub fn insert(&self, digest: Digest, key: VerifiedKey, epoch: u64, now: Instant) {
        if self.epoch() != epoch {
            return;
        }
        let key_id = key.key_id;
        // Map the key first, so that an invalidation running alongside finds
        // the entry; then check the epoch again and undo if one did run.
        // A mapping whose entry is gone is stale; a live mapping evicted for
        // room takes its entry with it, so no cached secret outlives its map.
        let previous = self.by_key.insert_bounded(
            &mut self.by_key.shard(&key_id),
            key_id,
            digest,
            |mapped| !self.entries.shard(mapped).contains_key(mapped),
            |_, mapped| {
                self.entries.shard(&mapped).remove(&mapped);
            },
        );
        if let Some(old) = previous.filter(|old| *old != digest) {
            self.entries.shard(&old).remove(&old);
        }
        let mut shard = self.entries.shard(&digest);
        self.entries.insert_bounded(
            &mut shard,
            digest,
            (key, now + self.ttl),
            |(_, expires)| *expires <= now,
            |_, _| {},
        );
        drop(shard);
        if self.epoch() != epoch {
            self.entries.shard(&digest).remove(&digest);
        }
    }

    /// Forgets a key (rotated or deleted) at once.
    pub fn invalidate(&self, key_id: ApiKeyId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let digest = self.by_key.shard(&key_id).remove(&key_id);
        if let Some(digest) = digest {
            self.entries.shard(&digest).remove(&digest);
        }
    }

    /// Forgets everything (a revocation may have been missed).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.for_each_shard(|shard| shard.clear());
        self.by_key.for_each_shard(|shard| shard.clear());
    }

    /// Calls `f` on every cached key (one shard locked at a time).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&VerifiedKey)) {
        self.entries.for_each_shard(|shard| shard.values().for_each(|(key, _)| f(key)));
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this cache holds.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn key(n: u128) -> VerifiedKey {
        VerifiedKey::new(Verified {
            key_id: ApiKeyId(Uuid::from_u128(n)),
            tenant_id: TenantId(Uuid::from_u128(100)),
            owner_id: UserId(Uuid::from_u128(200)),
            version: 1,
            valid_until: None,
            restrictions: Arc::default(),
            owner_may: PermissionSet::all(),
            rendered: OnceLock::new(),
            rendered_headers: OnceLock::new(),
            previous: false,
            tally: UseTally::default(),
            recorder: Arc::new(UsageRecorder::new(10)),
            budgets: KeyBudgets::default(),
        })
    }

    #[test]
    fn hits_until_ttl_or_invalidation() {
        let cache = VerifiedKeyCache::new(10, Duration::from_secs(30)).unwrap();
        let now = Instant::now();
        let d = cache.digest("lk_secret");
        assert_ne!(d, cache.digest("lk_secreT"));
        cache.insert(d, key(1), cache.epoch(), now);
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
        let cache = VerifiedKeyCache::new(100, Duration::from_secs(30)).unwrap();
        let now = Instant::now();
        let (old, new) = (cache.digest("lk_a"), cache.digest("lk_b"));
        cache.insert(old, key(1), cache.epoch(), now);
        cache.insert(new, key(1), cache.epoch(), now);
        assert_eq!(cache.get(&old, now), None, "a key's previous secret is dropped");
        assert_eq!(cache.get(&new, now), Some(key(1)));
        for n in 2..5_000 {
            cache.insert(cache.digest(&format!("lk_{n}")), key(n), cache.epoch(), now);
        }
        assert!(cache.len() <= cache.capacity() && cache.capacity() < 200, "{}", cache.len());
        cache.invalidate_all();
        assert!(cache.is_empty());
    }
}
